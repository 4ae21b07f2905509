"""Small shared helpers for the tests: tiny random models and their inputs, importing files outside the packages
(bench scripts, node modules)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from i2vgen_core import build_unet, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def pack_module(name: str):
    """nodes/<name>.py imported as part of the package without running nodes/__init__.py (which needs ComfyUI)."""
    pack, nodes = "_i2vgen_pack_under_test", "_i2vgen_pack_under_test.nodes"
    if pack not in sys.modules:
        sys.modules[pack] = types.ModuleType(pack)
        sys.modules[pack].__path__ = [str(ROOT)]
        sys.modules[nodes] = types.ModuleType(nodes)
        sys.modules[nodes].__path__ = [str(ROOT / "nodes")]
    return importlib.import_module(f"{nodes}.{name}")


def random_unet(variant: str = "i2vgen_xl", seed: int = 0, **overrides):
    """A tiny model with every parameter random (the real init zeroes some output layers, hiding bugs)."""
    torch.manual_seed(seed)
    unet = build_unet(tiny_config(variant, **overrides)).eval().requires_grad_(False)
    for p in unet.parameters():
        p.normal_(0, 0.05)
    return unet


def inputs_for(unet, batch: int = 2, frames: int = 3, h: int = 8, w: int = 12, seed: int = 1) -> tuple:
    """(sample, timestep, kwargs) matching what the variant takes."""
    g = torch.Generator().manual_seed(seed)
    c = unet.config
    kw = {}
    if c.use_text:
        kw["text"] = torch.randn(batch, 77, c.context_dim, generator=g)
    if c.use_image_embedding:
        kw["image_embedding"] = torch.randn(batch, c.image_embedding_dim, generator=g)
    if c.use_image_latent:
        kw["image_latent"] = torch.randn(batch, 4, h, w, generator=g)
    if c.use_fps:
        kw["fps"] = torch.full((batch,), 16)
    return torch.randn(batch, 4, frames, h, w, generator=g), torch.linspace(999, 1, batch).round(), kw


# diffusers' DDIMScheduler exactly as the hub's ali-vilab/i2vgen-xl scheduler/scheduler_config.json sets it
HUB_SCHEDULER_CONFIG = {
    "beta_end": 0.02,
    "beta_schedule": "squaredcos_cap_v2",
    "beta_start": 0.0001,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "thresholding": False,
    "timestep_spacing": "leading",
}


def modelscope_file(relative: str) -> Path:
    """Path of a file inside the installed modelscope multi_modal models package (loaded as a file, never the
    package); skips the test when it is not there."""
    spec = importlib.util.find_spec("modelscope")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("modelscope is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "multi_modal" / relative
    if not path.exists():
        pytest.skip(f"{path} not found in this modelscope version")
    return path


def module_from_path(name: str, path: Path):
    """The Python file `path` imported as module `name` (scripts outside the packages, e.g. bench/*.py), registered in
    sys.modules so its dataclasses resolve; the repository root never goes on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

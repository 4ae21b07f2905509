"""The in-process ComfyUI harness shared by the benchmarks and the in-process checks
(tests/comfyui/inprocess/*_checks.py): import a ComfyUI work tree (CPU) and this package the way ComfyUI loads custom
nodes, and build the pack's MODEL around a core UNet. Run with ComfyUI's Python."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup(comfy_root: str, repo: str | Path = REPO):
    """Import ComfyUI from `comfy_root` with --cpu, then `repo` as the package ``i2vgen_pkg`` (by file location, so
    relative imports and ComfyUI's top-level ``nodes`` module behave as in the server); that module."""
    if "i2vgen_pkg" in sys.modules:
        return sys.modules["i2vgen_pkg"]
    sys.path.insert(0, str(comfy_root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (device selection reads the args)

    spec = importlib.util.spec_from_file_location("i2vgen_pkg", Path(repo) / "__init__.py",
                                                  submodule_search_locations=[str(repo)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["i2vgen_pkg"] = pkg
    spec.loader.exec_module(pkg)
    return pkg


def patcher_for(core, weight_dtype=None, manual_cast=None):
    """The pack's MODEL (a CPU ModelPatcher) with the weights and configuration of the core UNet `core`, built the
    way the loader builds it (weights stored in `weight_dtype`, fp32 by default; `manual_cast` compute dtype)."""
    import torch
    import comfy.model_patcher
    from i2vgen_pkg.nodes.comfy_model import I2VGenXLModel, load_comfy_unet

    dtype = weight_dtype or torch.float32
    cpu = torch.device("cpu")
    unet = load_comfy_unet(core.state_dict(), dtype=dtype, manual_cast_dtype=manual_cast, device="cpu",
                           load_device=cpu, config=core.config)
    model = I2VGenXLModel(unet, weight_dtype=dtype, manual_cast_dtype=manual_cast)
    return comfy.model_patcher.ModelPatcher(model, cpu, cpu)


def tiny_patcher(variant: str, weight_dtype=None, manual_cast=None, seed: int = 0):
    """patcher_for the demo weights' tiny random UNet of `variant`."""
    from i2vgen_pkg.i2vgen_core.weights.demo import demo_unet

    return patcher_for(demo_unet(variant, seed), weight_dtype, manual_cast)


def conds(h: int, w: int, seed: int = 0):
    """(positive, negative) I2VGen-XL conditioning with random text, image embedding and an h x w image latent, as
    I2VGen-XL Conditioning makes it (the negative side has a zero image embedding)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(1, 4, h, w, generator=g)
    emb = torch.randn(1, 1024, generator=g)
    pos = [[torch.randn(1, 77, 1024, generator=g), {"i2vgen_image_embedding": emb, "i2vgen_image_latent": lat,
                                                    "i2vgen_fps": 16}]]
    neg = [[torch.randn(1, 77, 1024, generator=g), {"i2vgen_image_embedding": torch.zeros_like(emb),
                                                    "i2vgen_image_latent": lat, "i2vgen_fps": 16}]]
    return pos, neg

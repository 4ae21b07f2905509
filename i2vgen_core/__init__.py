"""I2VGen-XL family core: one spatio-temporal UNet, its weights, schedules and samplers. No ComfyUI imports.

Where things live (each subpackage's docstring says more):

- ``config``, ``sizes``, ``memory``, ``text``, ``dtypes``: configuration and rules; importing them never imports torch
- ``network/``: the UNet, its layers, attention backends, hooks and layer factories
- ``speed/``: optional speed levers (fused kernels, fp8 compute, CUDA graphs, compilation) and where they are switched
- ``weights/``: checkpoint reading, key layouts, loading, conversion, encoder files, the model-file catalog, demo weights
- ``diffusion/``: noise schedules, samplers and the two-stage pipeline
- ``video/``: image preprocessing, frame helpers, long-video windows, previews
- ``python -m i2vgen_core --help``: the command-line tools

The public names below are imported on first use, so ``import i2vgen_core`` alone costs nothing and never imports
torch.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "CheckpointError": "weights.read",
    "export_state_dict": "weights.layouts",
    "load_state_dict_any": "weights.load",
    "load_unet": "weights.load",
    "UNetConfig": "config",
    "tiny_config": "config",
    "variant_config": "config",
    "I2VGenUNet": "network.unet",
    "build_unet": "network.unet",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Import a public name from the module that defines it, on first use."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """Public names and submodules, for tab completion."""
    return sorted(set(globals()) | set(_PUBLIC))

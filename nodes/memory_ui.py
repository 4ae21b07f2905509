"""The memory estimate on the nodes: text for the node UI (js/estimate.js shows it), a warning in the log when the
run exceeds the device's free memory, and a refusal before any large allocation when it can never fit."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..i2vgen_core import memory as M
from ..i2vgen_core.dtypes import BYTES, FP8, dtype_name
from .common import LOG

#: What the node UI shows before the first estimate (also the key js/estimate.js reads).
UI_KEY = "i2vgen_memory"


def device_memory() -> tuple[Optional[int], Optional[int], str, bool, str]:
    """(free bytes, total bytes, device name, is a GPU, VAE dtype name) of ComfyUI's torch device; Nones, "the
    device" and fp16 outside ComfyUI."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return None, None, "the device", False, "fp16"
    dev = mm.get_torch_device()
    gpu = dev.type != "cpu"
    name = f"the GPU ({dev})" if gpu else "the CPU (RAM)"
    return int(mm.get_free_memory(dev)), int(mm.get_total_memory(dev)), name, gpu, _dtype_name(mm.vae_dtype(dev))


def loader_dtypes(variant: str, choice: str) -> tuple[str, Optional[str]]:
    """(weight, compute) dtype names the loader's weight_dtype `choice` gives on ComfyUI's device (compute None:
    the formula's default for the weights, e.g. fp16/bf16 activations for fp8 weights); fp16 / fp8 outside it."""
    try:
        import comfy.model_management as mm
        from .loader import pick_dtypes
    except ImportError:
        return ("fp8" if choice.startswith("fp8") else "fp16"), None
    weight, cast = pick_dtypes(choice, M.UNET_PARAMS[variant], None, mm.get_torch_device())
    compute = None if cast is None or _dtype_name(cast) == "fp8" else _dtype_name(cast)
    return _dtype_name(weight), compute


def default_dtypes(variant: str) -> list[tuple[str, Optional[str]]]:
    """(weight, compute) of the loader's "auto" and "fp8_e4m3fn" choices: the two lines a node shows when it does
    not know the model."""
    return [loader_dtypes(variant, choice) for choice in ("auto", "fp8_e4m3fn")]


def loader_settings(unet_name: str, weight_dtype: str = "auto", attention: str = "auto",
                    default_variant: str = "ms_vid2vid_xl") -> dict:
    """check_run's model settings from an I2VGen-XL Model Loader's widgets, before it loads: the variant of a
    known file name (else `default_variant`), the dtypes its weight_dtype gives here, its attention."""
    from ..i2vgen_core.weights.catalog import file_named

    known = file_named(str(unet_name or ""))
    variant = known.variant if known is not None and known.variant in M.UNET_PARAMS else default_variant
    weight, compute = loader_dtypes(variant, weight_dtype if isinstance(weight_dtype, str) else "auto")
    return {"variant": variant, "weight_dtype": weight, "compute_dtype": compute,
            "attention": attention if attention in M.ATTENTION else "sdpa"}


def _dtype_name(dtype) -> str:
    """The memory formula's name of a torch dtype: "fp8" for either fp8 format, fp16 for one it has no size for."""
    name = dtype_name(dtype)
    return "fp8" if name in FP8 else name if name in BYTES else "fp16"


def model_settings(model) -> dict:
    """variant / weight dtype / compute dtype / attention of a ComfyUI MODEL holding the pack's UNet (best effort)."""
    inner = getattr(model, "model", None)
    settings = {"variant": getattr(inner, "i2vgen_variant", "i2vgen_xl")}
    try:
        weight = model.model_dtype()
    except Exception:  # noqa: BLE001 - an unknown MODEL: assume half precision
        weight = torch.float16
    cast = getattr(inner, "manual_cast_dtype", None)
    settings["weight_dtype"] = _dtype_name(weight)
    compute = cast if cast is not None else weight
    # fp8 weights computed as they are (fp8 matmuls) still keep fp16/bf16 activations: the formula's default
    settings["compute_dtype"] = None if _dtype_name(compute) == "fp8" else _dtype_name(compute)
    unet = getattr(inner, "diffusion_model", None)
    backend = next((m.backend for m in unet.modules() if isinstance(getattr(m, "backend", None), str)),
                   "sdpa") if isinstance(unet, torch.nn.Module) else "sdpa"
    settings["attention"] = backend if backend in M.ATTENTION else "sdpa"
    try:
        settings["weight_bytes"] = int(model.model_size())
    except Exception:  # noqa: BLE001
        settings["weight_bytes"] = None
    if settings["variant"] not in M.UNET_PARAMS:
        settings["variant"] = "i2vgen_xl"
    return settings


def check_run(what: str, *, variant: str, width: int, height: int, frames: int, batch: int,
              cfg_batched: bool = True, weight_dtype: Optional[str] = None, compute_dtype: Optional[str] = None,
              attention: str = "sdpa", weight_bytes: Optional[int] = None, refuse: bool = True,
              windows: Optional[int] = None) -> list[str]:
    """Lines for the node UI; raises ValueError (before anything large is allocated) when the run cannot fit, or
    with `refuse` False (the estimate shown before a run) gives that reason as a WARNING line instead. `windows`:
    the node's context windows for the advice (None: it has none; 0: off; else the window, which `frames` is)."""
    free, total, device, gpu, vae_dtype = device_memory()
    known = weight_dtype is not None
    choices = [(weight_dtype, compute_dtype)] if known else default_dtypes(variant)
    fp8_compute = compute_dtype if known else choices[-1][1]
    smallest = M.estimate_run(variant, width, height, frames, batch, cfg_batched=False, weight_dtype="fp8",
                              compute_dtype=fp8_compute,
                              attention="sdpa" if attention == "math" else attention, frames_per_batch=1,
                              tile_size=512, vae_dtype=vae_dtype, gpu=gpu)
    limit = total if total is not None else 2 ** 50
    if weight_bytes:  # the loaded model's real size (the formula assumes the full-size checkpoint)
        smallest = dataclasses.replace(smallest, unet_weights=min(smallest.unet_weights, int(weight_bytes)))
    refused = M.refusal(smallest, limit, device=device)
    lines = []
    if refused and refuse:
        raise ValueError(f"{what}: {refused}")
    if refused:
        lines.append(f"WARNING: {refused[0].upper()}{refused[1:]}")
    for i, (dtype, compute) in enumerate(choices):
        est = M.estimate_run(variant, width, height, frames, batch, cfg_batched=cfg_batched, weight_dtype=dtype,
                             compute_dtype=compute, attention=attention, vae_dtype=vae_dtype, gpu=gpu)
        if weight_bytes:
            est = dataclasses.replace(est, unet_weights=int(weight_bytes))
        line, warning = M.describe(est, free=free, device=device, frames=frames, weight_dtype=dtype,
                                   label="" if known else f" with {dtype} weights", offloads=gpu, windows=windows)
        lines.append(line)
        if warning and i == 0:  # the default choice; its advice names fp8 too
            if refuse:  # a run logs it; the estimate before a run (a route asked on every edit) only shows it
                LOG.warning("%s: %s", what, warning)
            lines.append("WARNING: " + warning)
    return lines

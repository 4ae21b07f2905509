"""The memory estimate on the nodes: text for the node UI (js/estimate.js shows it), a warning in the log when the
run exceeds the device's free memory, and a refusal before any large allocation when it can never fit."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..i2vgen_core import memory as M
from .common import LOG

#: What the node UI shows before the first estimate (also the key js/estimate.js reads).
UI_KEY = "i2vgen_memory"


def device_memory() -> tuple[Optional[int], Optional[int], str, bool]:
    """(free bytes, total bytes, device name, is a GPU) of ComfyUI's torch device; Nones outside ComfyUI."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return None, None, "device", False
    dev = mm.get_torch_device()
    return int(mm.get_free_memory(dev)), int(mm.get_total_memory(dev)), str(dev), dev.type != "cpu"


def _dtype_name(dtype) -> str:
    if dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return "fp8"
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, "fp16")


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
    settings["compute_dtype"] = _dtype_name(cast if cast is not None else weight)
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
              attention: str = "sdpa", weight_bytes: Optional[int] = None) -> list[str]:
    """Lines for the node UI; raises ValueError (before anything large is allocated) when the run cannot fit."""
    free, total, device, gpu = device_memory()
    half = "fp16" if weight_dtype in (None, "fp8") else weight_dtype
    smallest = M.estimate_run(variant, width, height, frames, batch, cfg_batched=False, weight_dtype="fp8",
                              compute_dtype=compute_dtype or half, attention="sdpa" if attention == "math" else
                              attention, frames_per_batch=1, tile_size=512, gpu=gpu)
    limit = total if total is not None else 2 ** 50
    if weight_bytes:  # the loaded model's real size (the formula assumes the full-size checkpoint)
        smallest = dataclasses.replace(smallest, unet_weights=min(smallest.unet_weights, int(weight_bytes)))
    refused = M.refusal(smallest, limit, device=device)
    if refused:
        raise ValueError(f"{what}: {refused}")
    lines = []
    dtypes = [weight_dtype] if weight_dtype else ["fp16", "fp8"]
    for dtype in dtypes:
        est = M.estimate_run(variant, width, height, frames, batch, cfg_batched=cfg_batched, weight_dtype=dtype,
                             compute_dtype=compute_dtype, attention=attention, gpu=gpu)
        if weight_bytes:
            est = dataclasses.replace(est, unet_weights=int(weight_bytes))
        label = "" if weight_dtype else f" with {'fp16/bf16' if dtype == 'fp16' else 'fp8'} weights"
        line, warning = M.describe(est, free=free, device=device, frames=frames, weight_dtype=dtype)
        lines.append(line.replace("memory:", f"memory{label}:", 1))
        if warning and dtype == dtypes[0]:  # fp16 unless known: its advice names fp8 too
            LOG.warning("%s: %s", what, warning)
            lines.append("WARNING: " + warning)
    return lines

"""Non-finite value checks: a NaN/inf latent or image is reported with the fix, not written out as a black video."""

from __future__ import annotations

import torch

_FIXES = {
    "sampling": ("the model overflowed in half precision. Load the model with weight_dtype bf16 (or fp32) in "
                 "I2VGen-XL Model Loader, or start ComfyUI with --bf16-unet / --force-fp32"),
    "decode": ("the VAE overflowed in fp16. Run the VAE in bf16 or fp32 (start ComfyUI with --bf16-vae or "
               "--fp32-vae, or load the VAE with a fp32 dtype), or decode with tile on"),
}


def check_finite(tensor: torch.Tensor, stage: str) -> None:
    """Raise ValueError naming the stage, how much is bad and the fix when `tensor` holds NaN or inf values."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    bad = int(finite.numel() - finite.sum())
    nan = int(torch.isnan(tensor).sum())
    fix = _FIXES.get(stage, "use bf16 or fp32 instead of fp16")
    raise ValueError(f"I2VGen-XL: the {stage} produced {bad} non-finite values ({nan} NaN, {bad - nan} inf) of "
                     f"{tensor.numel()}; saving them would give a black video. Most likely {fix}.")

"""NaN/inf results in ComfyUI: the core's check with the advice a ComfyUI user can act on (the loader's
weight_dtype, ComfyUI's precision flags, the decode node's tiling)."""

from __future__ import annotations

from ..i2vgen_core.numerics import check_finite

#: The likely cause and the fix of non-finite values after each stage, completing the core's "Most likely ...".
FIXES = {
    "sampling": ("the model overflowed in half precision. Load the model with weight_dtype bf16 (or fp32) in "
                 "I2VGen-XL Model Loader, or start ComfyUI with --bf16-unet / --force-fp32"),
    "decode": ("the VAE overflowed in fp16. Run the VAE in bf16 or fp32 (start ComfyUI with --bf16-vae or "
               "--fp32-vae, or load the VAE with a fp32 dtype), or decode with tile on"),
}


def check_output(tensor, stage: str) -> None:
    """Raise the core's ValueError, with this stage's ComfyUI fix, when a stage's output holds NaN or inf."""
    check_finite(tensor, stage, FIXES[stage])

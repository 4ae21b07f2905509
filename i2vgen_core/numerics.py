"""Non-finite value checks: a NaN/inf latent or image is reported with the fix, not written out as a black video.

What to change is the caller's to say (the host knows its own precision settings and node names); the check only
counts, names the stage and appends that advice.
"""

from __future__ import annotations

import torch

#: The advice when the caller has none of its own.
DEFAULT_FIX = "use bf16 or fp32 instead of fp16"


def check_finite(tensor: torch.Tensor, stage: str, fix: str = DEFAULT_FIX) -> None:
    """Raise ValueError naming the stage, how much is bad and `fix` (the likely cause and what to change, completing
    "Most likely ...") when `tensor` holds NaN or inf values."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    bad = int(finite.numel() - finite.sum())
    nan = int(torch.isnan(tensor).sum())
    raise ValueError(f"I2VGen-XL: the {stage} produced {bad} non-finite values ({nan} NaN, {bad - nan} inf) of "
                     f"{tensor.numel()}; saving them would give a black video. Most likely {fix}.")

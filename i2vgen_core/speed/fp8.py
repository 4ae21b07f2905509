"""Opt-in "fast fp8" compute for the transformers' linear layers: fp8 e4m3 operands, fp32 accumulation.

On a GPU with fp8 tensor cores (compute capability 8.9+: Ada, Hopper) the product runs through `torch._scaled_mm`
with per-tensor or row-wise scales; elsewhere the same quantisation is emulated (quantise, dequantise, matmul in
fp32), so the numerics of the mode can be checked on any machine. Weights are quantised once when the mode is
switched on; activations per call. The layer's own weight and state-dict keys stay as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_MAX = 448.0  # largest finite float8_e4m3fn
SCALINGS = ("tensor", "row")


def quantize(x: torch.Tensor, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 e4m3 values, fp32 scale) with x ~= values * scale; scale per tensor ([]) or per row ([rows, 1])."""
    if scaling not in SCALINGS:
        raise ValueError(f"fp8 scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    amax = x.abs().amax(dim=-1, keepdim=True) if scaling == "row" else x.abs().amax()
    scale = (amax.float() / FP8_MAX).clamp(min=1e-12)
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def scaled_mm_supported(device: torch.device) -> bool:
    """Whether `torch._scaled_mm` runs fp8 on `device` (CUDA, compute capability 8.9 or newer)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def fp8_matmul(x2d: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None,
               scaling: str, out_dtype: torch.dtype, emulate: bool = False) -> torch.Tensor:
    """x2d [M, K] @ (w_q * w_scale)^T [K, N] + bias with x quantised to fp8 like the weight."""
    x_q, x_scale = quantize(x2d, scaling)
    if not emulate and scaled_mm_supported(x2d.device):
        if scaling == "tensor":
            return torch._scaled_mm(x_q, w_q.t(), scale_a=x_scale, scale_b=w_scale, bias=bias, out_dtype=out_dtype)
        # row-wise scales: cuBLAS/CUTLASS give bf16 output only; the bias is added after
        out = torch._scaled_mm(x_q, w_q.t(), scale_a=x_scale, scale_b=w_scale.reshape(1, -1),
                               out_dtype=torch.bfloat16).to(out_dtype)
        return out if bias is None else out + bias
    out = (x_q.float() * x_scale) @ (w_q.float() * w_scale).t()
    if bias is not None:
        out = out + bias.float()
    return out.to(out_dtype)


class Fp8Linear(nn.Linear):
    """A Linear switched to fp8 compute by `enable_fp8_compute` (its class is swapped, its parameters kept)."""

    fp8_scaling = "tensor"
    fp8_emulate = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 16 or self.out_features % 16 or (x.numel() // x.shape[-1]) % 16:
            # the fp8 GEMM wants multiples of 16 (the few odd ones: context projections)
            return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        bias = None if self.bias is None else self.bias.to(x.dtype)
        out = fp8_matmul(x.reshape(-1, x.shape[-1]), self.fp8_weight, self.fp8_scale, bias, self.fp8_scaling,
                         x.dtype, self.fp8_emulate)
        return out.reshape(*x.shape[:-1], self.out_features)


def enable_fp8_compute(module: nn.Module, scaling: str | None, emulate: bool = False) -> int:
    """Switch every plain nn.Linear inside `module` to fp8 compute (`scaling` "tensor" or "row"), or back (None);
    returns how many layers changed."""
    count = 0
    for layer in module.modules():
        if scaling is None:
            if isinstance(layer, Fp8Linear):
                layer.__class__ = nn.Linear
                del layer.fp8_weight, layer.fp8_scale
                count += 1
            continue
        if type(layer) not in (nn.Linear, Fp8Linear) or layer.weight.device.type == "meta":
            continue
        w_q, w_scale = quantize(layer.weight.detach(), scaling)
        layer.__class__ = Fp8Linear
        layer.register_buffer("fp8_weight", w_q, persistent=False)
        layer.register_buffer("fp8_scale", w_scale, persistent=False)
        layer.fp8_scaling, layer.fp8_emulate = scaling, emulate
        count += 1
    return count

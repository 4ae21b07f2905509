"""Fused element-wise kernels for the UNet's glue: video GroupNorm(+SiLU) and GEGLU.

Each op has a hand-written Triton kernel (CUDA, or the CPU interpreter under ``TRITON_INTERPRET=1``) and a torch
fallback that computes the same function. Triton is imported lazily and is never required.

Video GroupNorm works on a logical [N, F, C, S] view (clips, frames, channels, pixels) with any strides and writes
any strided output of that shape, so the layout change a consumer wants (the temporal transformer's
[N, S, F, C] tokens, a channels-last Conv3d input) happens inside the normalisation pass instead of in a copy.
Statistics are reduced per (clip, group) over (F, C/G, S) with the reduction split across many programs
(full GPU occupancy even for batch 1-2 video), accumulated in fp32 from chunk-shifted sums.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch
import torch.nn.functional as F


def triton_available() -> bool:
    """True when the triton package can be imported."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(x: torch.Tensor) -> bool:
    """Whether the Triton kernels serve `x`: triton importable, x on CUDA (or on the CPU under the interpreter),
    and not inside torch.compile (Inductor fuses the torch fallback itself)."""
    if not triton_available() or torch.compiler.is_compiling():
        return False
    return x.is_cuda or (x.device.type == "cpu" and interpreting())


def _build(interpret: bool):
    """The Triton kernel module, (re)loaded for the current interpreter mode."""
    import importlib  # noqa: PLC0415

    from . import triton_kernels as tk  # noqa: PLC0415 - optional dependency (triton)

    if tk.INTERPRET != interpret:
        tk = importlib.reload(tk)
    return tk.triton, tk.gn_stats_kernel, tk.gn_apply_kernel, tk.geglu_kernel


def _split_for(groups_total: int, tiles: int, device: torch.device) -> int:
    """How many programs share one group's tiles: about 4 waves of the GPU (the group count alone is only
    batch x 32 for the temporal layers), at most one per tile."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    return max(1, min(math.ceil(4 * sms / max(groups_total, 1)), tiles, 256))


def video_group_norm_out(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                         eps: float, silu: bool = False, out: torch.Tensor | None = None,
                         split: int | None = None) -> torch.Tensor:
    """GroupNorm (then SiLU when `silu`) of x viewed as [N, F, C, S], statistics per (clip, group) over
    (F, C/G, S); written into `out` (any strides, same shape; default: x's layout) and returned."""
    if x.ndim != 4 or x.shape[2] % groups:
        raise ValueError(f"video_group_norm_out wants [N, F, C, S] with C divisible by {groups}, got {list(x.shape)}")
    if out is None:
        out = torch.empty_like(x)
    if use_triton(x) and x.numel():
        return _gn_triton(x, groups, weight, bias, eps, silu, out, split)
    return _gn_torch(x, groups, weight, bias, eps, silu, out)


def _gn_torch(x, groups, weight, bias, eps, silu, out):
    n, f, c, s = x.shape
    acc = torch.promote_types(x.dtype, torch.float32)
    grouped = x.unflatten(2, (groups, c // groups))
    var, mean = torch.var_mean(grouped.to(acc) if x.dtype != acc else grouped, dim=(1, 3, 4), correction=0,
                               keepdim=True)
    rstd = torch.rsqrt(var + eps)
    shape = (1, 1, c, 1)
    norm = ((grouped - mean) * rstd).flatten(2, 3)
    if weight is not None:
        norm = norm * weight.to(acc).view(shape)
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and (x.requires_grad or (
            weight is not None and weight.requires_grad))):  # out= has no autograd; Inductor fuses the copy
        norm = norm + bias.to(acc).view(shape) if bias is not None else norm
        return out.copy_(F.silu(norm) if silu else norm)
    # the last pass writes straight into out's strides (no separate layout copy)
    if silu:
        if bias is not None:
            norm = norm + bias.to(acc).view(shape)
        return torch.mul(norm, torch.sigmoid(norm), out=out)
    if bias is not None:
        return torch.add(norm, bias.to(acc).view(shape), out=out)
    return torch.mul(norm, 1.0, out=out)


def _gn_triton(x, groups, weight, bias, eps, silu, out, split):
    triton, stats_k, apply_k, _ = _build(interpreting())
    n, f, c, s = x.shape
    cg = c // groups
    cgp = triton.next_power_of_2(cg)
    # tiles of [group channels, pixels], one frame each (the interpreter: big tiles, few Python iterations)
    block_s = min(max(16, 4096 // cgp) if x.is_cuda else 64, max(16, triton.next_power_of_2(s)))
    s_tiles = triton.cdiv(s, block_s)
    n_tiles = f * s_tiles
    split = min(split or _split_for(n * groups, n_tiles, x.device), n_tiles)
    per_prog = triton.cdiv(n_tiles, split)
    split = triton.cdiv(n_tiles, per_prog)
    parts = torch.empty(n * groups, split, 3, device=x.device, dtype=torch.float32)
    grid = (n * groups, split)
    stats_k[grid](x, parts, s, groups, cg, per_prog, n_tiles, s_tiles, *x.stride(), CGP=cgp, BLOCK_S=block_s)
    affine = weight is not None
    w = weight if affine else x  # placeholders are never read when AFFINE is off
    b = (bias if bias is not None else torch.zeros(c, device=x.device, dtype=x.dtype)) if affine else x
    apply_k[grid](x, out, w, b, parts, s, groups, cg, per_prog, n_tiles, s_tiles, float(eps), *x.stride(),
                  *out.stride(), SILU=silu, AFFINE=affine, CGP=cgp, BLOCK_S=block_s,
                  PBLOCK=triton.next_power_of_2(split))
    return out


def geglu(h: torch.Tensor) -> torch.Tensor:
    """value * gelu(gate) for h = [..., 2D] holding [value | gate] (GEGLU after its projection)."""
    if use_triton(h) and h.is_contiguous() and h.numel():
        triton, _, _, kernel = _build(interpreting())
        d = h.shape[-1] // 2
        rows = h.numel() // (2 * d)
        y = torch.empty(*h.shape[:-1], d, device=h.device, dtype=h.dtype)
        block = min(1024, triton.next_power_of_2(d)) if h.is_cuda else min(64, triton.next_power_of_2(d))
        kernel[(rows, triton.cdiv(d, block))](h, y, rows, d, BLOCK_D=block)
        return y
    value, gate = h.chunk(2, dim=-1)
    return value * F.gelu(gate)

"""Fused-kernel forwards of the network's layers: GroupNorm(+SiLU) and GEGLU as single passes (`kernels`).

Each class here is a layer of `network.layers` with only its `forward` replaced; `levers.set_fused_kernels` swaps a
live layer's class to it and back, so parameters, state-dict keys and `isinstance` checks stay as they are (the way
a host injects its own layer classes from outside). Each computes the same function as the layer it replaces. The
temporal layers' norms write the layout their consumer reads (the transformer's [B, H*W, F, C] tokens, the Conv3d's
input), so no transposed copies are made around them. A norm whose weights a host casts or patches per use (e.g.
ComfyUI's) cannot be read directly: that layer runs its plain forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..network.hooks import ForwardHooks
from ..network.layers import (GEGLU, ResBlock, TemporalConv, TemporalTransformer, _add_frames, _channels_last,
                              _plain_layer)
from ..network.ops import weight_of
from . import kernels


def fused_group_norm(norm: nn.Module, x: torch.Tensor, silu: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """`norm` (a GroupNorm) then optionally SiLU on x viewed as [clips, frames, C, pixels], in one fused pass
    (`kernels.video_group_norm_out`) written into `out`'s layout."""
    weight = weight_of(norm, x) if norm.weight is not None else None
    bias = norm.bias.to(x.device, x.dtype) if norm.bias is not None else None
    return kernels.video_group_norm_out(x, norm.num_groups, weight, bias, norm.eps, silu, out)


def _frames_view(t: torch.Tensor, b: int, frames: int) -> torch.Tensor:
    """[B, C, F, H, W] (any memory layout) as a [B, F, C, H*W] view (a copy only if no view exists)."""
    try:
        return t.transpose(1, 2).view(b, frames, t.shape[1], -1)
    except RuntimeError:
        return t.transpose(1, 2).reshape(b, frames, t.shape[1], -1)


def _norm_silu_conv(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A resnet's GroupNorm, SiLU, (dropout,) conv with the norm and SiLU as one pass that keeps x's layout."""
    if not (_plain_layer(seq[0]) and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))):
        return seq(x)
    bf, c, h, w = x.shape
    out = torch.empty_like(x)  # keeps x's memory format
    fused_group_norm(seq[0], x.view(bf, 1, c, h * w), True, out=out.view(bf, 1, c, h * w))
    return seq[-1](out)


def _norm_tokens(norm: nn.Module, x: torch.Tensor, frames: int) -> torch.Tensor:
    """GroupNorm of x [B*F, C, H, W] per clip, written straight into the temporal transformer's [B*H*W, F, C]
    tokens (no transposed copy of x, no permuted copy of the result)."""
    bf, c, h, w = x.shape
    b = bf // frames
    tokens = torch.empty(b, h * w, frames, c, device=x.device, dtype=x.dtype)
    fused_group_norm(norm, _frames_view(x.view(b, frames, c, h, w).transpose(1, 2), b, frames), False,
                     out=tokens.permute(0, 2, 3, 1))
    return tokens.view(b * h * w, frames, c)


class FusedGEGLU(GEGLU):
    """GEGLU with value * gelu(gate) as one pass over the projection's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.geglu(self.proj(x))


class FusedResBlock(ResBlock):
    """ResBlock with each GroupNorm+SiLU as one pass."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = _norm_silu_conv(self.in_layers, x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = _norm_silu_conv(self.out_layers, h)
        return self.temporal_conv(self.skip_connection(x) + h, frames)


class FusedTemporalConv(TemporalConv):
    """TemporalConv whose GroupNorm+SiLU passes read the previous layout and write the Conv3d's input."""

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        stages = (self.conv1, self.conv2, self.conv3, self.conv4)
        if not all(_plain_layer(s[0]) for s in stages):
            return super().forward(x, frames)
        bf, c, h, w = x.shape
        b = bf // frames
        # the Conv3d input is [B, C, F, H, W]; channels-last-3d in a channels-last trunk, which is then the trunk's
        # own memory order (no copy between the trunk and the convolutions)
        fmt = torch.channels_last_3d if _channels_last(x) else torch.contiguous_format
        y = _frames_view(x.view(b, frames, c, h, w).transpose(1, 2), b, frames)
        for stage in stages:
            buf = torch.empty(b, c, frames, h, w, device=x.device, dtype=x.dtype, memory_format=fmt)
            fused_group_norm(stage[0], y, True, out=_frames_view(buf, b, frames))
            y = _frames_view(stage[-1](buf), b, frames)
        return _add_frames(x, y.view(b, frames, c, h, w), b, frames)


class FusedTemporalTransformer(TemporalTransformer):
    """TemporalTransformer whose GroupNorm writes the [B, H*W, F, C] tokens directly from the trunk."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, frames: int, hooks: ForwardHooks | None = None,
                memory_format: torch.memory_format | None = None) -> torch.Tensor:
        if not _plain_layer(self.norm):
            return super().forward(x, context, frames, hooks, memory_format)
        return self._transform(x, _norm_tokens(self.norm, x, frames), frames, hooks, memory_format)


#: plain layer class -> its fused-kernel class
FUSED = {GEGLU: FusedGEGLU, ResBlock: FusedResBlock, TemporalConv: FusedTemporalConv,
         TemporalTransformer: FusedTemporalTransformer}
PLAIN = {fused: plain for plain, fused in FUSED.items()}

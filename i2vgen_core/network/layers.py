"""Building blocks of the spatio-temporal UNet: resnets, temporal convolutions, spatial and temporal transformers.

Activations travel through the trunk as [B*F, C, H, W]; temporal layers regroup them by frame count. Each layer
computes the plain network; the speed levers (`i2vgen_core.speed.levers`) change how from outside, e.g. by swapping
in the fused-kernel subclasses of `i2vgen_core.speed.fused`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .hooks import ForwardHooks, apply_all
from .ops import CastLinear, torch_ops, weight_of


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] with frequencies 10000^(-i/half), computed in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _plain_layer(layer: nn.Module) -> bool:
    """No per-use casting or patching hooks on this layer (e.g. ComfyUI's), so its weights may be read directly."""
    return not (getattr(layer, "comfy_cast_weights", False) or getattr(layer, "weight_function", None)
                or getattr(layer, "bias_function", None))


def _direct_weight(layer: nn.Module) -> bool:
    """Whether a projection's weight may be read directly: no per-use casting or patching hooks (e.g. ComfyUI's)."""
    if not _plain_layer(layer):
        return False
    # plain torch, our casting layer, or a host layer that declares it is not casting right now (ComfyUI's ops)
    return type(layer).forward in (nn.Linear.forward, CastLinear.forward) or hasattr(layer, "comfy_cast_weights")


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections and a biased output projection."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, ops=torch_ops):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = ops.Linear(dim, inner, bias=False)
        self.to_k = ops.Linear(context_dim or dim, inner, bias=False)
        self.to_v = ops.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([ops.Linear(inner, dim)])
        self.backend = "sdpa"
        self.fused = True  # one GEMM for q,k,v (self-attention) or k,v (cross-attention); weights stay separate

    def _project(self, x: torch.Tensor, ctx: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        if not (self.fused and all(map(_direct_weight, (self.to_q, self.to_k, self.to_v)))):
            src = x if ctx is None else ctx
            return self.to_q(x), self.to_k(src), self.to_v(src)
        if ctx is None:
            w = torch.cat([weight_of(self.to_q, x), weight_of(self.to_k, x), weight_of(self.to_v, x)])
            return torch.nn.functional.linear(x, w).chunk(3, dim=-1)
        w = torch.cat([weight_of(self.to_k, ctx), weight_of(self.to_v, ctx)])
        return (self.to_q(x), *torch.nn.functional.linear(ctx, w).chunk(2, dim=-1))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention, or cross-attention to `context`; a context with batch B for x with batch B*F is shared
        by the F frames of each video: their queries attend together, so keys and values are computed once."""
        return self._run(x, context, self._attend)

    def _run(self, x: torch.Tensor, context: torch.Tensor | None, attend) -> torch.Tensor:
        """Projections (fused where allowed), `attend` on projected [B, N, heads*dim] tensors, output projection."""
        if context is not None and context.shape[0] != x.shape[0]:
            bf, n, c = x.shape
            return self._run(x.reshape(context.shape[0], -1, c), context, attend).reshape(bf, n, -1)
        return self.to_out[0](attend(*self._project(x, context)))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """This layer's attention backend on projected [B, N, heads*dim] tensors."""
        b, n = q.shape[0], q.shape[1]
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        return attention(q, k, v, self.backend).transpose(1, 2).reshape(b, n, -1)

    def forward_hooked(self, x: torch.Tensor, context: torch.Tensor | None, kind: str,
                       hooks: ForwardHooks) -> torch.Tensor:
        """`forward` with the hooks' attention patches, replacement and attention function (see hooks.py)."""
        call = hooks.call(kind, self.heads, self.to_q.out_features // self.heads)
        patches = hooks.attn_patch.get(kind)
        replace = hooks.attn_replace(call) if hooks.attn_replace is not None else None
        if patches or replace is not None:
            if context is not None and context.shape[0] != x.shape[0]:  # per-frame view for patches
                context = context.repeat_interleave(x.shape[0] // context.shape[0], dim=0)
            value = None
            if patches:
                context = x if context is None else context
                value = context
                for patch in patches:
                    x, context, value = patch(x, context, value, call)
            source = x if context is None else context
            q, k, v = self.to_q(x), self.to_k(source), self.to_v(source if value is None else value)
            out = (replace or self._attend_with(hooks))(q, k, v, self.heads, call)
            out = self.to_out[0](out)
        elif hooks.attention is not None:
            out = self._run(x, context, lambda q, k, v: hooks.attention(q, k, v, self.heads, call))
        else:
            out = self.forward(x, context)
        return apply_all(hooks.attn_output_patch.get(kind, ()), out, call)

    def _attend_with(self, hooks: ForwardHooks):
        """The attention function for projected [B, N, heads*dim] tensors: the hooks' one, else this layer's."""
        if hooks.attention is not None:
            return hooks.attention
        return lambda q, k, v, heads, call: self._attend(q, k, v)


class GEGLU(nn.Module):
    """Linear projection to 2x width, value * gelu(gate)."""

    def __init__(self, dim: int, inner: int, ops=torch_ops):
        super().__init__()
        self.proj = ops.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with 4x inner width (keys net.0.proj / net.2)."""

    def __init__(self, dim: int, mult: int = 4, ops=torch_ops):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult, ops), nn.Identity(), ops.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, second attention (cross, or self when context_dim is None), feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None, ops=torch_ops):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim, None, ops)
        self.attn2 = Attention(dim, heads, head_dim, context_dim, ops)
        self.ff = FeedForward(dim, 4, ops)
        self.norm1 = ops.LayerNorm(dim)
        self.norm2 = ops.LayerNorm(dim)
        self.norm3 = ops.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, hooks: ForwardHooks | None = None,
                temporal: bool = False) -> torch.Tensor:
        if hooks is None:
            x = self.attn1(self.norm1(x)) + x
            x = self.attn2(self.norm2(x), context) + x
            return self.ff(self.norm3(x)) + x
        # hooked: spatial self-attention is "self", temporal attention "temporal" (both of its attentions: the
        # temporal transformer's second attention is a self-attention too), cross-attention "cross"
        kind1 = "temporal" if temporal else "self"
        kind2 = "temporal" if temporal else "cross"
        x = self._attn(self.attn1, self.norm1(x), None, kind1, hooks) + x
        x = apply_all(hooks.after_self_attention, x, hooks)
        x = self._attn(self.attn2, self.norm2(x), context, kind2, hooks) + x
        return self.ff(self.norm3(x)) + x

    @staticmethod
    def _attn(layer: Attention, x: torch.Tensor, context: torch.Tensor | None, kind: str,
              hooks: ForwardHooks) -> torch.Tensor:
        return layer.forward_hooked(x, context, kind, hooks) if hooks.wants_attention_hooks(kind) else layer(x, context)


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the H*W tokens of each frame, cross-attending to the context."""

    def __init__(self, channels: int, head_dim: int, context_dim: int, groups: int, ops=torch_ops):
        super().__init__()
        self.norm = ops.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = ops.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(channels, channels // head_dim, head_dim, context_dim, ops)])
        self.proj_out = ops.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int,
                hooks: ForwardHooks | None = None) -> torch.Tensor:
        bf, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        tokens = self.proj_in(tokens)
        for i, block in enumerate(self.transformer_blocks):
            if hooks is not None:
                hooks.enter_transformer_block(i)
            tokens = block(tokens, context, hooks)
        tokens = self.proj_out(tokens)
        if hooks is not None:
            hooks.leave_spatial_transformer()
        return tokens.transpose(1, 2).reshape(bf, c, h, w) + x


def _channels_last(x: torch.Tensor) -> bool:
    """Whether x [N, C, ...] keeps its channels innermost (NHWC / NDHWC), read off the strides: for 1x1 frames
    `is_contiguous` holds in both layouts, the strides still say which one x was made in."""
    return x.stride(1) < x.stride(-1)


def _add_frames(x: torch.Tensor, y: torch.Tensor, b: int, frames: int,
                memory_format: torch.memory_format | None = None) -> torch.Tensor:
    """x [B*F, C, H, W] + y given as any [B, F, C, H, W] view: one pass into `memory_format` (default: x's own
    layout, NCHW or NHWC; an element-wise sum is the same in either), no transposed copy of y."""
    fmt = memory_format or (torch.channels_last if _channels_last(x) else torch.contiguous_format)
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)):
        # out= has no autograd; under torch.compile Inductor fuses the add and the layout change itself
        return (x.view(b, frames, *x.shape[1:]) + y).reshape(x.shape).contiguous(memory_format=fmt)
    out = torch.empty_like(x, memory_format=fmt)
    torch.add(x.view(b, frames, *x.shape[1:]), y, out=out.view(b, frames, *x.shape[1:]))
    return out


class TemporalTransformer(nn.Module):
    """Transformer across the frames of every pixel (self-attention only, no positional embedding)."""

    def __init__(self, channels: int, heads: int, head_dim: int, groups: int, ops=torch_ops):
        super().__init__()
        inner = heads * head_dim
        self.norm = ops.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = ops.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, None, ops)])
        self.proj_out = ops.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, frames: int, hooks: ForwardHooks | None = None,
                memory_format: torch.memory_format | None = None) -> torch.Tensor:
        """x [B*F, C, H, W] plus the transformer of its frames. The sum is written in `memory_format`, the trunk's
        layout (default: x's own): the UNet passes it, as x, a spatial transformer's sum, is laid out NHWC
        (its token view's layout) even in an NCHW trunk."""
        bf, c, h, w = x.shape
        b = bf // frames
        normed = self.norm(x.view(b, frames, c, h, w).transpose(1, 2))  # on the [B, C, F, H, W] view
        return self._transform(x, normed.permute(0, 3, 4, 2, 1).reshape(b * h * w, frames, c), frames, hooks,
                               memory_format)

    def _transform(self, x: torch.Tensor, tokens: torch.Tensor, frames: int, hooks: ForwardHooks | None,
                   memory_format: torch.memory_format | None) -> torch.Tensor:
        """The transformer on the normalised tokens [B*H*W, F, C] of x [B*F, C, H, W], plus x. Callers pass the
        tokens unnamed: the projection's output replaces them, so they are freed here, not held by the caller."""
        bf, c, h, w = x.shape
        b = bf // frames
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, None, hooks, temporal=True)
        tokens = self.proj_out(tokens)
        if hooks is not None:
            hooks.leave_temporal_transformer()
        return _add_frames(x, tokens.view(b, h, w, frames, c).permute(0, 3, 4, 1, 2), b, frames, memory_format)


class TemporalConv(nn.Module):
    """Four GroupNorm-SiLU-Conv3d(3,1,1) stages across frames with a residual connection."""

    def __init__(self, channels: int, groups: int, ops=torch_ops):
        super().__init__()

        def stage(first: bool) -> nn.Sequential:
            conv = ops.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
            # keys: conv1.0/.2 ; conv2..4 .0/.3 (a dropout sits at index 2 in the original)
            mid = [nn.SiLU()] if first else [nn.SiLU(), nn.Identity()]
            return nn.Sequential(ops.GroupNorm(groups, channels), *mid, conv)

        self.conv1 = stage(True)
        self.conv2 = stage(False)
        self.conv3 = stage(False)
        self.conv4 = stage(False)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, h, w = x.shape
        b = bf // frames
        y = x.view(b, frames, c, h, w).transpose(1, 2)  # [B, C, F, H, W]
        y = self.conv4(self.conv3(self.conv2(self.conv1(y))))
        return _add_frames(x, y.transpose(1, 2), b, frames)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add time embedding, GroupNorm-SiLU-conv, skip; then a temporal convolution."""

    def __init__(self, channels: int, out_channels: int, emb_dim: int, groups: int, ops=torch_ops):
        super().__init__()
        self.in_layers = nn.Sequential(ops.GroupNorm(groups, channels), nn.SiLU(),
                                       ops.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), ops.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(ops.GroupNorm(groups, out_channels), nn.SiLU(), nn.Identity(),
                                        ops.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if channels == out_channels
                                else ops.Conv2d(channels, out_channels, 1))
        self.temporal_conv = TemporalConv(out_channels, groups, ops)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.temporal_conv(self.skip_connection(x) + h, frames)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution; MS-Vid2Vid-XL pads the height by 2 (its 720p trick)."""

    def __init__(self, channels: int, vid2vid_pad: bool, ops=torch_ops):
        super().__init__()
        self.op = ops.Conv2d(channels, channels, 3, stride=2, padding=(2, 1) if vid2vid_pad else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling to the skip connection's size, then a 3x3 convolution."""

    def __init__(self, channels: int, vid2vid_pad: bool, ops=torch_ops):
        super().__init__()
        self.vid2vid_pad = vid2vid_pad
        self.conv = ops.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.vid2vid_pad:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")[..., 1:-1, :]
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class ImageTemporalEncoder(nn.Module):
    """The image-latent branch's tiny transformer across frames (pre-norm attention, then a GELU MLP)."""

    def __init__(self, channels: int, heads: int = 2, mult: int = 4, ops=torch_ops):
        super().__init__()
        self.heads = heads
        self.norm = ops.LayerNorm(channels)
        self.to_qkv = ops.Linear(channels, 3 * heads * channels, bias=False)
        self.to_out = ops.Linear(heads * channels, channels)
        self.ff = nn.Sequential(ops.Linear(channels, channels * mult), nn.GELU(), ops.Linear(channels * mult, channels))
        self.backend = "sdpa"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, f, _ = x.shape
        q, k, v = (t.view(n, f, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, -1))
        x = self.to_out(attention(q, k, v, self.backend).transpose(1, 2).reshape(n, f, -1)) + x
        return self.ff(x) + x

"""Hook points of one forward pass: what a host (ComfyUI, a FreeU switch, a test) may plug into the network.

`I2VGenUNet.forward(..., hooks=ForwardHooks(...))` threads one `ForwardHooks` object through every block and
transformer. With `hooks=None` (the default) the network runs exactly the kernels it runs without this module.

Where the network calls what (block names follow the original layout: ``input_blocks[i]``, ``middle_block``,
``output_blocks[i]``):

* ``embedding(emb, hooks)`` once, on the per-video time (+fps) embedding, before it is shared by the frames;
* ``input_block(h, hooks)`` after each input block, then the skip is stored, then ``input_block_after_skip``;
* ``middle_block_before(h, hooks)`` / ``middle_block_after(h, hooks)`` around the middle block;
* ``output_block(h, skip, hooks) -> (h, skip)`` before each output block concatenates its skip;
* attention, per attention layer, with an `AttentionCall` saying where it is (``kind`` is ``"self"`` for the
  spatial self-attention, ``"cross"`` for the cross-attention to the context, ``"temporal"`` for the temporal
  self-attention across frames): ``attn_patch[kind]`` patches the inputs of the projections (``x, context, value``)
  before they are projected; ``attn_replace(call)`` may return a function that replaces the attention of projected
  ``q, k, v`` (``[B, N, heads*dim]``); ``attn_output_patch[kind]`` patches the attention's output (before the
  residual add); ``after_self_attention`` runs on the residual stream after the first attention of a transformer
  block.
* ``attention(q, k, v, heads, call)``: the attention function itself (``[B, N, heads*dim]`` in and out), used for
  every attention of the network where no replacement is set.

Activations of the trunk are ``[B*F, C, H, W]`` (frames folded into the batch), spatial tokens ``[B*F, H*W, C]``,
temporal tokens ``[B*H*W, F, C]``. `position` is kept current while the network runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

Tensor = torch.Tensor

#: The attention kinds a hook can target.
ATTENTION_KINDS = ("self", "cross", "temporal")


@dataclass
class Position:
    """Where the forward pass is: block (``("input", i)``, ``("middle", 0)``, ``("output", i)``), the running count
    of spatial transformers (ComfyUI's ``transformer_index``), of temporal transformers, and the index of the
    transformer block inside its transformer."""

    block: Optional[tuple[str, int]] = None
    transformer_index: int = 0
    temporal_index: int = 0
    block_index: int = 0


@dataclass(frozen=True)
class AttentionCall:
    """One attention call as hooks see it."""

    kind: str
    heads: int
    dim_head: int
    block: Optional[tuple[str, int]]
    transformer_index: int
    block_index: int
    hooks: "ForwardHooks"


AttnFn = Callable[[Tensor, Tensor, Tensor, int, AttentionCall], Tensor]


@dataclass
class ForwardHooks:
    """Callbacks for one forward pass (all optional); see the module docstring for where each runs."""

    embedding: list[Callable] = field(default_factory=list)
    input_block: list[Callable] = field(default_factory=list)
    input_block_after_skip: list[Callable] = field(default_factory=list)
    middle_block_before: list[Callable] = field(default_factory=list)
    middle_block_after: list[Callable] = field(default_factory=list)
    output_block: list[Callable] = field(default_factory=list)
    attn_patch: dict[str, list[Callable]] = field(default_factory=dict)
    attn_output_patch: dict[str, list[Callable]] = field(default_factory=dict)
    after_self_attention: list[Callable] = field(default_factory=list)
    attn_replace: Optional[Callable[[AttentionCall], Optional[AttnFn]]] = None
    attention: Optional[AttnFn] = None
    position: Position = field(default_factory=Position)
    #: free-form values for the host's callbacks (e.g. the video shape)
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ bookkeeping (hosts may extend)
    def enter_block(self, name: str, index: int) -> None:
        """Called before each block runs."""
        self.position.block = (name, index)

    def enter_transformer_block(self, index: int) -> None:
        """Called before each transformer block of a spatial transformer."""
        self.position.block_index = index

    def leave_spatial_transformer(self) -> None:
        """Called after each spatial transformer (ComfyUI counts these as ``transformer_index``)."""
        self.position.transformer_index += 1

    def leave_temporal_transformer(self) -> None:
        """Called after each temporal transformer."""
        self.position.temporal_index += 1

    def reset(self) -> None:
        """Called when a forward pass starts."""
        self.position = Position()

    # ------------------------------------------------------------------ calls made by the network
    def call(self, kind: str, heads: int, dim_head: int) -> AttentionCall:
        """The `AttentionCall` describing an attention of `kind` at the current position."""
        p = self.position
        index = p.temporal_index if kind == "temporal" else p.transformer_index
        return AttentionCall(kind, heads, dim_head, p.block, index, p.block_index, self)

    def wants_attention_hooks(self, kind: str) -> bool:
        """Whether attention of `kind` needs the hooked path (patches, a replacement or an injected function)."""
        return bool(self.attn_patch.get(kind) or self.attn_output_patch.get(kind) or self.attn_replace
                    or self.attention)


def apply_all(fns: list[Callable], value, *args):
    """value = fn(value, *args) for each fn in order."""
    for fn in fns:
        value = fn(value, *args)
    return value


# --------------------------------------------------------------------------------------------- FreeU
@dataclass(frozen=True)
class FreeU:
    """FreeU (Si et al. 2023) with diffusers' semantics: on the first two up-sampling levels (coarsest first) the
    first half of the backbone channels is scaled by ``b1`` / ``b2`` and the skip's low frequencies by ``s1`` /
    ``s2`` (a centred Fourier window of half-size 1)."""

    s1: float
    s2: float
    b1: float
    b2: float
    #: output blocks per up-sampling level (num_res_blocks + 1)
    blocks_per_level: int = 3

    def __call__(self, h: Tensor, skip: Tensor, hooks: ForwardHooks) -> tuple[Tensor, Tensor]:
        """An ``output_block`` hook."""
        block = hooks.position.block
        level = block[1] // self.blocks_per_level if block is not None else -1
        if level == 0:
            b, s = self.b1, self.s1
        elif level == 1:
            b, s = self.b2, self.s2
        else:
            return h, skip
        half = h.shape[1] // 2
        h = torch.cat([h[:, :half] * b, h[:, half:]], dim=1)
        return h, fourier_filter(skip, 1, s)


def fourier_filter(x: Tensor, threshold: int, scale: float) -> Tensor:
    """Scale the centred (low-frequency) ``2*threshold`` square of x's 2-D spectrum by `scale`."""
    dtype = x.dtype
    h, w = x.shape[-2:]
    if dtype not in (torch.float32, torch.float64) or (h & (h - 1)) or (w & (w - 1)):
        x = x.to(torch.float32)  # half-precision FFTs need power-of-two sizes
    freq = torch.fft.fftshift(torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1))
    mask = torch.ones(freq.shape[-2:], device=x.device, dtype=x.dtype)
    ch, cw = h // 2, w // 2
    mask[ch - threshold:ch + threshold, cw - threshold:cw + threshold] = scale
    out = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return out.to(dtype)

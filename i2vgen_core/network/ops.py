"""Layer factories the network is built from: plain torch layers, or layers that upcast stored weights at use.

The UNet takes an `ops` namespace (Linear, Conv2d, Conv3d, GroupNorm, LayerNorm). ComfyUI passes its own
`comfy.ops` classes here so its memory manager, fp8 storage and LoRA patching work on this network unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

torch_ops = SimpleNamespace(Linear=nn.Linear, Conv2d=nn.Conv2d, Conv3d=nn.Conv3d, GroupNorm=nn.GroupNorm,
                            LayerNorm=nn.LayerNorm)


def _cast(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    w = module.weight.to(x.dtype) if module.weight is not None else None
    b = module.bias.to(x.dtype) if module.bias is not None else None
    return w, b


class CastLinear(nn.Linear):
    """nn.Linear whose weights may be stored in a narrower dtype (fp8) and are cast to the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, *_cast(self, x))


class CastConv2d(nn.Conv2d):
    """nn.Conv2d with per-use weight casting."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *_cast(self, x))


class CastConv3d(nn.Conv3d):
    """nn.Conv3d with per-use weight casting."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *_cast(self, x))


class CastGroupNorm(nn.GroupNorm):
    """nn.GroupNorm with per-use weight casting."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, *_cast(self, x), self.eps)


class CastLayerNorm(nn.LayerNorm):
    """nn.LayerNorm with per-use weight casting."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, *_cast(self, x), self.eps)


cast_ops = SimpleNamespace(Linear=CastLinear, Conv2d=CastConv2d, Conv3d=CastConv3d, GroupNorm=CastGroupNorm,
                           LayerNorm=CastLayerNorm)


def weight_of(layer: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """A layer's weight in the dtype/device of `like` (fused projections read weights directly)."""
    w = layer.weight
    return w if (w.dtype == like.dtype and w.device == like.device) else w.to(device=like.device, dtype=like.dtype)

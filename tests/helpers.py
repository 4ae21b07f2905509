"""Small shared helpers for the core tests (tiny random models and their inputs)."""

from __future__ import annotations

import torch

from i2vgen_core import build_unet, tiny_config


def random_unet(variant: str = "i2vgen_xl", seed: int = 0, **overrides):
    """A tiny model with every parameter random (the real init zeroes some output layers, hiding bugs)."""
    torch.manual_seed(seed)
    unet = build_unet(tiny_config(variant, **overrides)).eval().requires_grad_(False)
    for p in unet.parameters():
        p.normal_(0, 0.05)
    return unet


def inputs_for(unet, batch: int = 2, frames: int = 3, h: int = 8, w: int = 12, seed: int = 1) -> tuple:
    """(sample, timestep, kwargs) matching what the variant takes."""
    g = torch.Generator().manual_seed(seed)
    c = unet.config
    kw = {}
    if c.use_text:
        kw["text"] = torch.randn(batch, 77, c.context_dim, generator=g)
    if c.use_image_embedding:
        kw["image_embedding"] = torch.randn(batch, c.image_embedding_dim, generator=g)
    if c.use_image_latent:
        kw["image_latent"] = torch.randn(batch, 4, h, w, generator=g)
    if c.use_fps:
        kw["fps"] = torch.full((batch,), 16)
    return torch.randn(batch, 4, frames, h, w, generator=g), torch.linspace(999, 1, batch).round(), kw

"""Shared benchmark plumbing: build a diffusers I2VGenXLUNet and ours with the same random weights, time both."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from i2vgen_core import load_unet
from i2vgen_core.weights.layouts import diffusers_config
from i2vgen_core.config import variant_config


def medium_config(model_channels: int = 64, head_dim: int = 64, context_dim: int = 1024):
    """An I2VGen-XL-shaped configuration, narrower than the real one (320 channels)."""
    channels = tuple(model_channels * m for m in (1, 2, 4, 4))  # the real model's plan, narrower
    return variant_config("i2vgen_xl", block_channels=channels, head_dim=head_dim, context_dim=context_dim,
                          image_embedding_dim=context_dim)


def random_ours(config, *, dtype=torch.float32, device="cpu", seed=0):
    """Our UNet alone with random weights, allocated directly on `device` (no CPU copy of a full-size model)."""
    from i2vgen_core import build_unet

    torch.manual_seed(seed)
    unet = build_unet(config, device="meta").to_empty(device=device)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)
    return unet.to(dtype).eval().requires_grad_(False)


def build_pair(config, *, dtype=torch.float32, device="cpu", seed=0, full_size_random=False):
    """(diffusers I2VGenXLUNet, our I2VGenUNet) holding identical random weights."""
    from diffusers import I2VGenXLUNet

    cfg = diffusers_config(config)
    cfg.pop("_class_name")
    torch.manual_seed(seed)
    with torch.device("meta" if full_size_random else "cpu"):
        ref = I2VGenXLUNet(**cfg)
    if full_size_random:
        ref = ref.to_empty(device=device)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.02)
    ref = ref.to(device=device, dtype=dtype).eval().requires_grad_(False)
    ours = load_unet(ref.state_dict(), dtype=dtype, device=device)
    ours.image_branch_scale = 1.0
    return ref, ours


def make_inputs(config, batch: int, frames: int, h: int, w: int, *, dtype=torch.float32, device="cpu", seed=1):
    """Inputs for both models: (ours_kwargs, diffusers_kwargs, sample, timestep)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    x, lat = r(batch, 4, frames, h, w), r(batch, 4, h, w)
    text, emb = r(batch, 77, config.context_dim), r(batch, config.image_embedding_dim)
    fps = torch.full((batch,), 16, device=device)
    t = torch.full((batch,), 981, device=device)
    ramp = [lat[:, :, None]] + [torch.ones_like(lat)[:, :, None] * j / max(frames - 1, 1) for j in range(1, frames)]
    theirs = dict(encoder_hidden_states=text, image_embeddings=emb[:, None], image_latents=torch.cat(ramp, 2), fps=fps)
    ours = dict(text=text, image_embedding=emb, image_latent=lat, fps=fps)
    return ours, theirs, x, t


def interleaved_median(fns: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None] = lambda: None,
                       warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin so drift hits all equally."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
        sync()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_cpu_allocated(fn):
    """Run ``fn()``; (its result, peak bytes of CPU tensor memory allocated while it ran, above the start)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0]
    return result, max([0, *totals])

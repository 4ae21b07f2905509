"""The memory estimate: the live-bytes counter is sound, the formula matches counted full-size forwards, and the
estimate is within 2 % of every GPU measurement in bench/measured."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from i2vgen_core import memory as M
from i2vgen_core.network.live_bytes import LiveTensorBytes
from i2vgen_core.config import tiny_config
from i2vgen_core import build_unet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import memory_counts  # noqa: E402


def _tiny_peak(device: str) -> int:
    torch.manual_seed(0)
    config = tiny_config()
    unet = build_unet(config, device=device).eval()
    make = (lambda *s: torch.randn(*s, device=device)) if device == "cpu" else (
        lambda *s: torch.empty(*s, device=device))
    counter = LiveTensorBytes()
    with torch.inference_mode(), counter:
        unet(make(2, 4, 4, 16, 16), torch.full((2,), 500, device=device), text=make(2, 77, config.context_dim),
             image_embedding=make(2, 1024), image_latent=make(2, 4, 16, 16), fps=16)
    return counter.peak


def test_counter_counts_views_once_and_frees():
    counter = LiveTensorBytes()
    with counter:
        a = torch.ones(1024)            # 4 KiB
        b = a.view(32, 32)              # view: no new storage
        c = a * 2                       # 4 KiB
        del c
        d = b + 1                       # 4 KiB, reuses the freed budget
        del a, b, d
    assert counter.peak == 8192
    assert counter.live == 0


def test_meta_count_equals_real_cpu_count():
    """Counting on the meta device (what the full-size figures use) gives exactly the real CPU forward's bytes."""
    assert _tiny_peak("meta") == _tiny_peak("cpu") > 0


@pytest.mark.parametrize("variant,shape", [("i2vgen_xl", (2, 16, 88, 160)), ("ms_image2video", (1, 8, 32, 32)),
                                           ("ms_vid2vid_xl", (2, 8, 26, 48))])
def test_formula_matches_full_size_count(variant, shape):
    b, f, h, w = shape
    counted = memory_counts.unet_peak(variant, b, f, h, w)
    est = M.unet_activation_bytes(b, f, w * 8, h * 8, "fp16", gpu=False, variant=variant) - M.SAMPLING_OVERHEAD
    assert abs(est - counted) / counted < 0.01


def test_estimate_within_two_percent_of_every_gpu_measurement():
    rows = memory_counts.measured_points(ROOT / "bench" / "measured")
    assert len(rows) >= 7
    for row in rows:
        assert abs(row["error_pct"]) < 2.0, row


def test_fp8_tiles_and_frames_lower_the_estimate():
    base = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1)
    assert M.estimate_run("i2vgen_xl", 1280, 704, 16, 1, weight_dtype="fp8").peak < base.peak
    assert M.estimate_run("i2vgen_xl", 1280, 704, 8, 1).peak < base.peak
    assert M.vae_decode_bytes(1280, 720, 2, tile_size=512) < M.vae_decode_bytes(1280, 720, 2)
    assert 10 < base.peak / M.GIB < 13


def test_advice_names_the_levers():
    est = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1)
    line, warning = M.describe(est, free=8 * M.GIB, frames=16, weight_dtype="fp16")
    assert "GiB" in line and warning is not None
    assert "fp8" in warning and "fewer frames" in warning and "tile on" in warning and "frames_per_batch 1" in warning
    decode_bound = M.estimate_run("i2vgen_xl", 1280, 704, 2, 1, frames_per_batch=16)
    assert M.advice(decode_bound, 2 * M.GIB, frames=2, frames_per_batch=16)[0].startswith("decode with tile")
    assert M.describe(est, free=80 * M.GIB, frames=16)[1] is None


def test_huge_request_is_refused():
    est = M.estimate_run("i2vgen_xl", 8192, 8192, 1000, 1, cfg_batched=False, weight_dtype="fp8", tile_size=512,
                         frames_per_batch=1)
    msg = M.refusal(est, 80 * M.GIB)
    assert msg is not None and "at least" in msg and "TiB" not in msg
    assert M.refusal(M.estimate_run(), 80 * M.GIB) is None


def test_warning_fits_the_device_and_skips_a_worthless_fp8_tip():
    est = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1, weight_dtype="fp32", vae_dtype="fp32", gpu=False)
    line, warning = M.describe(est, free=8 * M.GIB, device="the CPU (RAM)", frames=16, weight_dtype="fp32",
                               label=" with fp32 weights", offloads=False)
    assert line.startswith("Estimated peak memory with fp32 weights on the CPU (RAM): ")
    assert "swap" in warning and "offload" not in warning and "saves 4.0 GiB" in warning
    tiny = dataclasses.replace(est, unet_weights=20 * 2**20)  # a demo-size model: fp8 would save nothing worth it
    assert not any("fp8" in tip for tip in M.advice(tiny, 8 * M.GIB, frames=16, weight_dtype="fp32"))


def test_advice_for_the_refiner_names_its_context_windows():
    est = M.estimate_run("ms_vid2vid_xl", 1280, 720, 64, 1)
    off = M.advice(est, 24 * M.GIB, frames=64, windows=0)
    assert any(t.startswith("refine in context windows: context_frames ") for t in off), off
    on = M.advice(est, 24 * M.GIB, frames=64, windows=64)
    assert any(t.startswith("use a smaller context_frames") for t in on), on
    assert any(t.startswith("use fewer frames") for t in M.advice(est, 24 * M.GIB, frames=64)), "no windows"


def test_attention_names_are_the_configs():
    from i2vgen_core.config import ATTENTION_BACKENDS
    from i2vgen_core.network.attention import BACKENDS

    assert BACKENDS == ATTENTION_BACKENDS
    assert set(M.ATTENTION) - {"math"} <= set(ATTENTION_BACKENDS)  # "math": what sdpa is without a fused kernel
    with pytest.raises(ValueError, match="expected one of sdpa, xformers, chunked, math"):
        M.unet_activation_bytes(1, 16, 512, 512, attention="bmm")

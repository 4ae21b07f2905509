"""Long videos on the CPU: window plans cover every frame, blend weights sum to 1, windowed refinement equals the
unwindowed one for one window (and for any plan on a frame-independent network), clips join to 16 + 15k frames,
colour matching removes a known drift without a jump at the joins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import module_from_path
from i2vgen_core.weights.demo import demo_unet
from i2vgen_core.video.long_video import (WindowedUNet, blend_weights, check_window, extended_length, join_clips,
                                    match_color, match_color_ramped, mean_color_drift, window_plan, window_weights)
from i2vgen_core.diffusion.pipeline import run_refine_stage

ROOT = Path(__file__).resolve().parents[3]
CASES = [(f, w, o) for w, o in ((32, 8), (16, 4), (4, 2), (8, 0), (32, 31), (5, 1)) for f in range(1, 140, 7)]


@pytest.fixture(scope="module")
def bench():
    return module_from_path("_i2vgen_bench_long_video", ROOT / "bench" / "long_video.py")


# ----------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("frames,window,overlap", CASES)
def test_windows_cover_every_frame_with_the_overlap(frames, window, overlap):
    plan = window_plan(frames, window, overlap)
    covered = sorted({i for idx in plan for i in idx})
    assert covered == list(range(frames))
    if frames <= window:
        assert plan == [list(range(frames))]
        return
    assert all(len(idx) == window and idx == list(range(idx[0], idx[0] + window)) for idx in plan)
    assert plan[0][0] == 0 and plan[-1][-1] == frames - 1
    for a, b in zip(plan, plan[1:]):
        assert b[0] > a[0] and len(set(a) & set(b)) >= overlap


@pytest.mark.parametrize("frames,window,overlap", CASES)
def test_blend_weights_sum_to_one(frames, window, overlap):
    plan = window_plan(frames, window, overlap)
    weights = blend_weights(plan, frames)
    total = torch.zeros(frames, dtype=torch.float64)
    for idx, w in zip(plan, weights):
        assert w.shape == (len(idx),) and bool((w > 0).all()) and bool((w <= 1 + 1e-12).all())
        total[idx] += w
    assert torch.allclose(total, torch.ones(frames, dtype=torch.float64), atol=1e-12, rtol=0)
    for idx, w in zip(plan, weights):  # what ComfyUI's fuse callback gets for one window
        assert torch.equal(window_weights(idx, frames, window, overlap), w)


def test_even_overlaps_cross_fade_linearly():
    plan = window_plan(128, 32, 8)
    assert [idx[0] for idx in plan] == [0, 24, 48, 72, 96]
    w = blend_weights(plan, 128)
    assert torch.allclose(w[1][:8], torch.arange(1, 9, dtype=torch.float64) / 9)
    assert torch.allclose(w[0][-8:], torch.arange(8, 0, -1, dtype=torch.float64) / 9)
    assert bool((w[0][:24] == 1).all()) and bool((w[-1][8:] == 1).all())


def test_bad_windows_are_explained():
    assert "overlap" in check_window(32, 32) and "overlap" in check_window(8, -1)
    assert check_window(0, 0) and check_window(32, 8) is None
    with pytest.raises(ValueError, match="overlap"):
        window_plan(64, 16, 16)
    with pytest.raises(ValueError, match="not a window"):
        window_weights(list(range(3, 35)), 64, 32, 8)


# ----------------------------------------------------------------------------------------------- windowed refine
def _refine(unet, latents, text, seed=5):
    return run_refine_stage(unet, latents, text=text, negative_text=torch.zeros_like(text), steps=1,
                            generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def refiner():
    return demo_unet("ms_vid2vid_xl")


def _inputs(frames, h=2, w=8):
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, 4, frames, h, w, generator=g), torch.randn(1, 77, 1024, generator=g)


def test_one_window_equals_the_unwindowed_refine(refiner):
    latents, text = _inputs(5)
    assert torch.equal(_refine(WindowedUNet(refiner, 5, 2), latents, text), _refine(refiner, latents, text))


def test_windowed_refine_of_a_longer_video(refiner):
    latents, text = _inputs(7)
    out = _refine(WindowedUNet(refiner, 4, 2), latents, text)
    assert out.shape == latents.shape and bool(torch.isfinite(out).all())


class _PerFrame(torch.nn.Module):
    """A frame-independent stand-in UNet: windowing must then change nothing but rounding."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1))
        self.variant = "ms_vid2vid_xl"

    def forward(self, x, t, **conds):
        return self.conv(x) * (1 + t.float().view(-1, 1, 1, 1, 1) / 1000)


def test_windows_blend_back_to_the_full_output_for_a_frame_independent_net():
    net = _PerFrame().eval().requires_grad_(False)
    x = torch.randn(2, 4, 41, 6, 8)
    t = torch.tensor([500, 500])
    torch.testing.assert_close(WindowedUNet(net, 16, 4)(x, t), net(x, t), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------- clips and colour
def test_chained_extensions_make_16_plus_15k_frames():
    video = torch.zeros(1, 4, 16, 2, 2)
    for k in range(1, 5):
        new = torch.full((1, 4, 16, 2, 2), float(k))
        new[:, :, 0] = video[:, :, -1]
        video = join_clips(video, new)
        assert video.shape[2] == 16 + 15 * k == extended_length(16, 16, k)
    # no repeated frame: every join drops the clip's copy of the conditioning frame
    assert [float(video[0, 0, i, 0, 0]) for i in (15, 16, 30, 31)] == [0.0, 1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="frame axis"):
        join_clips(video, torch.zeros(1, 4, 16, 2, 3))


def test_match_color_moves_mean_and_std_to_the_reference():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 4, 16, 8, 8, generator=g)
    clip = torch.randn(2, 4, 12, 8, 8, generator=g) * 1.7 + 0.5
    out = match_color(clip, ref, "mean_std")
    dims = (2, 3, 4)
    torch.testing.assert_close(out.mean(dims), ref.mean(dims), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dims, unbiased=False), ref.std(dims, unbiased=False), atol=1e-4, rtol=0)
    mean_only = match_color(clip, ref, "mean")
    torch.testing.assert_close(mean_only.std(dims), clip.std(dims))
    assert match_color(clip, ref, "off") is clip
    with pytest.raises(ValueError, match="mean_std"):
        match_color(clip, ref, "histogram")


def test_ramped_match_keeps_frame_zero_and_corrects_the_last_frame():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(1, 4, 16, 8, 8, generator=g)
    clip = torch.randn(1, 4, 16, 8, 8, generator=g) * 2 + 1
    out = match_color_ramped(clip, ref, "mean_std", tail=1 / 16)
    assert torch.equal(out[:, :, 0], clip[:, :, 0])
    last = out[:, :, -1:]
    torch.testing.assert_close(last.mean((2, 3, 4)), ref.mean((2, 3, 4)), atol=1e-5, rtol=0)


def test_colour_matching_removes_the_known_drift_without_jumps(bench):
    off = bench.drift_run(4, "off")
    matched = bench.drift_run(4, "mean_std")
    whole = bench.drift_run(4, "mean_std", ramped=False)
    assert off["frames"] == matched["frames"] == 16 + 4 * 15
    drift_off, drift_on = off["per_clip_drift"], matched["per_clip_drift"]
    assert drift_off[0] == drift_on[0] == 0.0
    assert all(b > a for a, b in zip(drift_off[1:], drift_off[2:])), "without matching the drift accumulates"
    assert drift_off[-1] > 0.05 and max(drift_on) < 0.1 * drift_off[-1]
    # matching the whole clip at once would jump at each join; the ramped match does not
    assert matched["max_join_jump"] <= off["max_join_jump"] < whole["max_join_jump"]
    latent = bench.drift_run(4, "mean_std", "latent")
    assert max(latent["per_clip_drift"]) < 0.1 * drift_off[-1]
    print(f"\n[drift] off {drift_off} | mean_std {drift_on}")


def test_mean_color_drift_is_zero_for_the_reference_itself():
    x = torch.rand(1, 3, 8, 4, 4)
    assert mean_color_drift(x, x) == 0.0
    assert abs(mean_color_drift(x + 0.1, x) - 0.1) < 1e-6


def test_peak_cpu_allocated_counts_what_is_live_at_once(bench):
    """The bench's CPU counterpart of max_memory_allocated: the largest sum of live tensors, not their total."""
    def work():
        a = torch.empty(1 << 20)  # 4 MiB
        b = torch.empty(1 << 20)  # 4 MiB, both live: 8 MiB
        del a, b
        c = torch.empty(3 << 20)  # 12 MiB alone: the peak
        return c.numel()

    n, peak = bench.peak_cpu_allocated(work)
    assert n == 3 << 20
    assert 12 * 2**20 <= peak < 13 * 2**20, peak / 2**20

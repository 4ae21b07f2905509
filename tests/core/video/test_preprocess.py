"""i2vgen_core.video.preprocess against PIL (the original pipelines' resizer); the refiner's size rule against the ModelScope
refiner's layers; grey-frame check and frame resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference_models as rm  # tests/support/ is on sys.path via conftest
from i2vgen_core import sizes
from i2vgen_core.video import frames, postprocess
from i2vgen_core.video import preprocess as P

Image = pytest.importorskip("PIL.Image")

SIZES = [(480, 640), (1080, 1920), (333, 517), (704, 1280), (200, 150), (1024, 1024), (97, 1301)]
TARGETS = [(1280, 704), (1280, 1280), (448, 448), (448, 256)]


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise: every resampling weight matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x + y) % 256], -1)
    return np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)


def _pil_center_crop_wide(a: np.ndarray, tw: int, th: int) -> np.ndarray:
    """The original CenterCropWide, written out with PIL (reference for the test only)."""
    im = Image.fromarray(a)
    scale = min(im.width / tw, im.height / th)
    im = im.resize((round(im.width // scale), round(im.height // scale)), resample=Image.BOX)
    x1, y1 = (im.width - tw) // 2, (im.height - th) // 2
    return np.asarray(im.crop((x1, y1, x1 + tw, y1 + th))).astype(np.float64)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).float().div(255.0)[None]


@pytest.mark.parametrize("h,w", SIZES)
def test_cover_resize_box_matches_pil(h, w):
    a = _scene(h, w)
    for tw, th in TARGETS:
        ref = _pil_center_crop_wide(a, tw, th)
        ours = P.cover_resize_box(_t(a), tw, th, quantize=True, exact=True)[0].numpy() * 255.0
        assert ours.shape == ref.shape
        diff = np.abs(ours - ref)
        assert diff.max() < 1e-9, (h, w, tw, th, diff.max())  # Pillow's fixed-point arithmetic: exact
        # Without 8-bit rounding the float result stays within one level too.
        ours_f = P.cover_resize_box(_t(a), tw, th, exact=True)[0].numpy() * 255.0
        assert np.abs(ours_f - ref).max() <= 1.0 + 1e-4


def test_cover_resize_default_avoids_black_edge():
    # 512 // (512 / 1280) == 1279 in floating point: the original pads a black row and column.
    a = np.full((512, 512, 3), 200, np.uint8)
    assert P.cover_size(512, 512, 1280, 1280, exact=True) == (1279, 1279)
    assert P.cover_size(512, 512, 1280, 1280) == (1280, 1280)
    exact = P.cover_resize_box(_t(a), 1280, 1280, exact=True)
    clean = P.cover_resize_box(_t(a), 1280, 1280)
    assert exact[0, 0].max() == 0.0 and exact[0, :, 0].max() == 0.0
    assert torch.allclose(clean, torch.full_like(clean, 200 / 255.0), atol=1e-6)


@pytest.mark.parametrize("h,w", [(1280, 1280), (448, 448), (333, 517), (672, 448), (100, 120)])
def test_bilinear_matches_pil(h, w):
    a = _scene(h, w, seed=1)
    ref = np.asarray(Image.fromarray(a).resize((224, 224), Image.BILINEAR)).astype(np.float64)
    ours = P.pil_resize(_t(a), 224, 224, "bilinear", quantize=True)[0].numpy() * 255.0
    diff = np.abs(ours - ref)
    assert diff.max() < 1e-9
    # torch's antialiased bilinear is the same filter (float, unrounded)
    aa = F.interpolate(_t(a).movedim(-1, 1), size=(224, 224), mode="bilinear", antialias=True,
                       align_corners=False).movedim(1, -1)[0].numpy() * 255.0
    assert np.abs(aa - ref).max() <= 1.0 + 1e-3


def test_clip_image_input_pipeline_matches_pil():
    a = _scene(704, 1280, seed=2)
    im = Image.fromarray(a)
    # original: CenterCropWide((1280, 1280)) -> Resize(224) bilinear
    sq = _pil_center_crop_wide(a, 1280, 1280).astype(np.uint8)
    ref = np.asarray(Image.fromarray(sq).resize((224, 224), Image.BILINEAR)).astype(np.float64)
    ours = P.clip_image_input(_t(a), exact=True)[0].numpy() * 255.0
    assert ours.shape == (224, 224, 3)
    assert np.abs(ours - ref).max() < 1e-9
    assert im.size == (1280, 704)


def test_layouts_and_batches():
    a = torch.rand(2, 60, 90, 3)
    out_last = P.cover_resize_box(a, 40, 24)
    out_first = P.cover_resize_box(a.movedim(-1, 1), 40, 24)
    assert out_last.shape == (2, 24, 40, 3) and out_first.shape == (2, 3, 24, 40)
    assert torch.allclose(out_last, out_first.movedim(1, -1))
    assert P.cover_resize_box(a[0], 40, 24).shape == (24, 40, 3)


def test_clip_normalize_constants():
    x = torch.tensor(P.CLIP_MEAN).view(1, 1, 1, 3).expand(1, 4, 4, 3)
    assert torch.allclose(P.clip_normalize(x), torch.zeros(1, 4, 4, 3), atol=1e-7)
    assert P.CLIP_STD == (0.26862954, 0.26130258, 0.27577711)


def _modelscope_v2v_module():
    """ModelScope's unet_v2v.py, executed with its GPU-only imports stubbed (only Downsample/Upsample are used)."""
    try:
        return rm.load_modelscope_unet_module("vid2vid")
    except FileNotFoundError:
        pytest.skip("modelscope's unet_v2v.py is not installed")


def _v2v_roundtrip_ok(module, h: int, w: int) -> bool:
    """Run 3 of ModelScope's padded Downsamples and 3 cropping Upsamples; skips must match in size."""
    down = module.Downsample(1, True, dims=2)
    up = module.Upsample(1, True, dims=2)
    x = torch.zeros(1, 1, h, w)
    skips = []
    with torch.no_grad():
        for _ in range(3):
            skips.append(tuple(x.shape[-2:]))
            x = down(x)
        for _ in range(3):
            x = up(x)
            if tuple(x.shape[-2:]) != skips.pop():
                return False
    return True


def test_vid2vid_heights_match_modelscope_layers():
    module = _modelscope_v2v_module()
    for h in range(2, 130):
        assert sizes.padded_height_ok(h) == _v2v_roundtrip_ok(module, h, 16), h
    assert _v2v_roundtrip_ok(module, 90, 160) and sizes.padded_height_ok(90)
    assert not sizes.padded_height_ok(88)


def test_vid2vid_valid_height_closed_form():
    for h in range(1, 300):
        assert sizes.padded_height_ok(h) == (h % 8 == 2), h


@pytest.mark.parametrize("size,expected", [((1280, 720), (1280, 720)), ((1280, 704), (1280, 720)),
                                           ((1270, 700), (1280, 720)), ((1280, 660), (1280, 656)),
                                           ((448, 256), (448, 272)),
                                           ((10, 10), (64, 16)), ((1920, 1080), (1920, 1104))])
def test_snap_refiner_size(size, expected):
    w, h = sizes.snap_refiner_size(*size)
    assert (w, h) == expected
    assert w % 64 == 0 and sizes.padded_height_ok(h // 8)


def test_grey_frame_rule():
    grey = torch.full((32, 32, 3), 127 / 255.0)
    assert postprocess.is_grey_frame(grey)
    mixed = grey.clone()
    mixed[:20] = 1.0  # 62.5 % white -> 37.5 % grey
    assert not postprocess.is_grey_frame(mixed)
    assert not postprocess.is_grey_frame(torch.rand(64, 64, 3) * 0.3)
    # truncation like astype(uint8): 116.99 -> 116 (outside), 137.99 -> 137 (inside)
    assert not postprocess.is_grey_frame(torch.full((4, 4, 3), 116.99 / 255.0))
    assert postprocess.is_grey_frame(torch.full((4, 4, 3), 137.99 / 255.0))


def test_resample_frames():
    v = torch.arange(4.0).view(1, 1, 4, 1, 1)
    assert frames.resample_frames(v, 8, "repeat").flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert frames.resample_frames(v, 2, "repeat").flatten().tolist() == [0, 2]
    interp = frames.resample_frames(v, 7, "interpolate").flatten()
    assert torch.allclose(interp, torch.linspace(0, 3, 7))
    assert frames.resample_frames(v, 4, "interpolate") is v
    with pytest.raises(ValueError):
        frames.resample_frames(v, 0)


def test_resize_video_bilinear_matches_refiner():
    frames = torch.rand(3, 64, 96, 3)
    out = P.resize_video_bilinear(frames, 160, 90)
    ref = F.interpolate(frames.movedim(-1, 1), size=(90, 160), mode="bilinear").movedim(1, -1)
    assert torch.allclose(out, ref)
    cropped = P.resize_video_bilinear(frames, 64, 64, crop=True)
    assert cropped.shape == (3, 64, 64, 3)

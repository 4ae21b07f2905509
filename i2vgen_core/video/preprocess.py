"""Image and video preprocessing of the original I2VGen-XL / ModelScope pipelines, on plain torch tensors.

The original code resizes with PIL on 8-bit images: a BOX-filter resize that covers the target size followed by
a centre crop (``CenterCropWide``) for the VAE image and for CLIP (to a square), then a BILINEAR resize to 224 for
CLIP. This module re-implements PIL's separable resampling (the same filter supports, centres and normalisation as
Pillow's ``Resample.c``) as sparse matrix products; with ``quantize`` it also uses Pillow's fixed-point arithmetic
on 8-bit levels, so the results equal PIL's exactly, and no PIL or ComfyUI import is needed. Images are float
tensors in [0, 1], either ``[B, H, W, C]`` (ComfyUI's IMAGE layout) or ``[B, C, H, W]``; every function returns the
layout it was given.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_IMAGE_SIZE = 224

#: Side of the square the original crops the conditioning image to before the 224 resize: the video width
#: (1280 for I2VGen-XL, 448 for MS-Image2Video).
I2VGEN_CLIP_SQUARE = 1280
MS_IMAGE2VIDEO_CLIP_SQUARE = 448

#: Smallest square side the nodes offer: the smallest video width. The original crops to the video width, whatever
#: it is, and resizes the square to 224 (up, for narrow videos).
MIN_CLIP_SQUARE = 64

_FILTER_SUPPORT = {"box": 0.5, "bilinear": 1.0}


def _as_bchw(img: torch.Tensor, channels_last: Optional[bool]) -> tuple[torch.Tensor, bool, bool]:
    """Return (img as [B,C,H,W], was_channels_last, had_batch_dim)."""
    had_batch = img.ndim == 4
    if img.ndim == 3:
        img = img.unsqueeze(0)
    if img.ndim != 4:
        raise ValueError(f"expected an image tensor [B,H,W,C] or [B,C,H,W], got shape {tuple(img.shape)}")
    if channels_last is None:
        last_ok = img.shape[-1] in (1, 3, 4)
        first_ok = img.shape[1] in (1, 3, 4)
        channels_last = last_ok or not first_ok
    if channels_last:
        img = img.movedim(-1, 1)
    return img, channels_last, had_batch


def _restore(img: torch.Tensor, channels_last: bool, had_batch: bool) -> torch.Tensor:
    if channels_last:
        img = img.movedim(1, -1)
    return img if had_batch else img.squeeze(0)


def _filter(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "box":
        return ((x > -0.5) & (x <= 0.5)).to(x.dtype)
    if kind == "bilinear":
        return (1.0 - x.abs()).clamp(min=0.0)
    raise ValueError(f"unknown resampling filter {kind!r}; expected 'box' or 'bilinear'")


def pil_resample_matrix(in_size: int, out_size: int, kind: str, device=None) -> torch.Tensor:
    """Sparse [out_size, in_size] float64 matrix of PIL's resampling weights along one axis (antialiased)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"cannot resample {in_size} pixels to {out_size}")
    support0 = _FILTER_SUPPORT.get(kind)
    if support0 is None:
        raise ValueError(f"unknown resampling filter {kind!r}; expected one of {sorted(_FILTER_SUPPORT)}")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = (torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * scale
    # C's (int) cast truncates toward zero; negatives are clamped to 0 right after, as in Pillow.
    xmin = torch.trunc(center - support + 0.5).clamp(min=0)
    xmax = torch.trunc(center + support + 0.5).clamp(max=in_size)
    idx = xmin[:, None] + torch.arange(ksize, dtype=torch.float64, device=device)[None, :]
    w = _filter(kind, (idx - center[:, None] + 0.5) / filterscale)
    w = w * (idx < xmax[:, None])
    total = w.sum(dim=1, keepdim=True)
    w = torch.where(total > 0, w / total.clamp(min=1e-300), w)
    rows = torch.arange(out_size, device=device)[:, None].expand(-1, ksize)
    keep = (w != 0) & (idx < in_size)
    indices = torch.stack([rows[keep], idx[keep].long()])
    return torch.sparse_coo_tensor(indices, w[keep], (out_size, in_size), check_invariants=False).coalesce()


#: Pillow's 8-bit resampler works in fixed point: coefficients scaled by 2**22 and rounded half away from zero,
#: sums started at 2**21 (rounding), results shifted right by 22 bits and clamped (``Resample.c``).
PIL_PRECISION_BITS = 32 - 8 - 2


def _fixed_point(mat: torch.Tensor) -> torch.Tensor:
    """Pillow's integer coefficients (as float64) of a coalesced sparse weight matrix."""
    scaled = mat.values() * float(1 << PIL_PRECISION_BITS)
    k = torch.where(scaled < 0, torch.trunc(scaled - 0.5), torch.trunc(scaled + 0.5))
    return torch.sparse_coo_tensor(mat.indices(), k, mat.shape, check_invariants=False).coalesce()


def _resample_axis(x: torch.Tensor, dim: int, out_size: int, kind: str, quantize: bool = False) -> torch.Tensor:
    """Resample float64 tensor `x` along `dim` with PIL's weights.

    With ``quantize`` the input is taken as 8-bit levels and the result computed in Pillow's fixed-point arithmetic
    (exact integer sums in float64), so it equals Pillow's uint8 output.
    """
    mat = pil_resample_matrix(x.shape[dim], out_size, kind, device=x.device)
    moved = x.movedim(dim, 0)
    flat = moved.reshape(moved.shape[0], -1)
    if quantize:
        levels = torch.floor(flat.clamp(0.0, 1.0) * 255.0 + 0.5)
        sums = torch.sparse.mm(_fixed_point(mat), levels) + float(1 << (PIL_PRECISION_BITS - 1))
        out = torch.floor(sums / float(1 << PIL_PRECISION_BITS)).clamp(0.0, 255.0) / 255.0
    else:
        out = torch.sparse.mm(mat, flat)
    return out.reshape((out_size,) + moved.shape[1:]).movedim(0, dim)


def _quantize8(x: torch.Tensor) -> torch.Tensor:
    """Round [0,1] values to the nearest 8-bit level (half up, as Pillow's fixed-point resampler)."""
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def pil_resize(img: torch.Tensor, width: int, height: int, kind: str = "bilinear", *, quantize: bool = False,
               channels_last: Optional[bool] = None) -> torch.Tensor:
    """Resize like PIL ``Image.resize((width, height), BOX|BILINEAR)``: separable, horizontal pass first.

    With ``quantize`` the input is rounded to 8-bit levels and both passes use Pillow's fixed-point arithmetic
    (8-bit intermediate after the horizontal pass, as in Pillow): the result equals a uint8 PIL image exactly.
    """
    x, cl, hb = _as_bchw(img, channels_last)
    dtype = x.dtype
    y = x.to(torch.float64)
    if y.shape[-1] != width:
        y = _resample_axis(y, 3, width, kind, quantize)
    if y.shape[-2] != height:
        y = _resample_axis(y, 2, height, kind, quantize)
    return _restore(y.to(dtype), cl, hb)


def cover_size(in_width: int, in_height: int, width: int, height: int, *, exact: bool = False) -> tuple[int, int]:
    """Size the original ``CenterCropWide`` resizes to before cropping width x height.

    The original computes ``round(w // scale)`` with ``scale = min(w / width, h / height)``. Floating-point floor
    often lands one pixel short of the target (512 // (512 / 1280) == 1279), and PIL's crop then fills a black
    row/column. ``exact=True`` keeps that; by default the size is kept >= the target (no black line).
    """
    scale = min(in_width / width, in_height / height)
    w, h = round(in_width // scale), round(in_height // scale)
    if exact:
        return max(1, w), max(1, h)
    return max(width, w), max(height, h)


def center_crop(img: torch.Tensor, width: int, height: int, *, pad: bool = False,
                channels_last: Optional[bool] = None) -> torch.Tensor:
    """Crop the centre width x height (offsets floor((W - width) / 2), as the original).

    With ``pad`` a crop larger than the image is filled with zeros (black), as PIL's ``Image.crop`` does.
    """
    x, cl, hb = _as_bchw(img, channels_last)
    h, w = x.shape[-2:]
    if (w < width or h < height) and not pad:
        raise ValueError(f"cannot crop {width}x{height} out of a {w}x{h} image")
    x1, y1 = (w - width) // 2, (h - height) // 2
    if x1 < 0 or y1 < 0:
        left, top = max(0, -x1), max(0, -y1)
        right, bottom = max(0, x1 + width - w), max(0, y1 + height - h)
        x = F.pad(x, (left, right, top, bottom))
        x1, y1 = x1 + left, y1 + top
    return _restore(x[..., y1:y1 + height, x1:x1 + width], cl, hb)


def cover_resize_box(img: torch.Tensor, width: int, height: int, *, quantize: bool = False, exact: bool = False,
                     channels_last: Optional[bool] = None) -> torch.Tensor:
    """BOX-filter resize to cover width x height, then centre crop: the original ``CenterCropWide``.

    ``exact`` reproduces the original's occasional one-pixel black edge (see :func:`cover_size`).
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    x, cl, hb = _as_bchw(img, channels_last)
    new_w, new_h = cover_size(x.shape[-1], x.shape[-2], width, height, exact=exact)
    x = pil_resize(x, new_w, new_h, "box", quantize=quantize, channels_last=False)
    x = center_crop(x, width, height, pad=exact, channels_last=False)
    return _restore(x, cl, hb)


def clip_image_input(img: torch.Tensor, *, square_size: int = I2VGEN_CLIP_SQUARE, size: int = CLIP_IMAGE_SIZE,
                     quantize: bool = True, exact: bool = False, channels_last: Optional[bool] = None) -> torch.Tensor:
    """The CLIP branch's image: BOX cover-resize to a square, centre crop, PIL BILINEAR to `size` (unnormalised)."""
    x = cover_resize_box(img, square_size, square_size, quantize=quantize, exact=exact, channels_last=channels_last)
    return pil_resize(x, size, size, "bilinear", quantize=quantize, channels_last=channels_last)


def clip_normalize(img: torch.Tensor, *, channels_last: Optional[bool] = None) -> torch.Tensor:
    """Apply the CLIP mean/std normalisation to a [0,1] image."""
    x, cl, hb = _as_bchw(img, channels_last)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return _restore((x[:, :3] - mean) / std, cl, hb)


def resize_video_bilinear(frames: torch.Tensor, width: int, height: int, *, crop: bool = False,
                          channels_last: Optional[bool] = None) -> torch.Tensor:
    """Bilinear (not antialiased) resize of frames as the MS-Vid2Vid-XL pipeline does; optional centre crop first
    to keep the aspect ratio (the original stretches)."""
    x, cl, hb = _as_bchw(frames, channels_last)
    if crop:
        h, w = x.shape[-2:]
        if w * height > h * width:
            cw = max(1, round(h * width / height))
            x = center_crop(x, cw, h, channels_last=False)
        elif w * height < h * width:
            ch = max(1, round(w * height / width))
            x = center_crop(x, w, ch, channels_last=False)
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return _restore(x, cl, hb)

"""Size rules of the family: pixel sizes the VAE takes, latent sizes each UNet variant takes, the refiner's sizes.

Every size check of the package is defined here once; the nodes, the pipeline, the UNet's input check and the
headless client call these functions. The file needs only the standard library (``workflows/headless_api.py``
loads it by path, without torch); ``js/common.js`` keeps the one mirrored copy of :func:`snap_refiner_size`,
tested against this one.
"""

from __future__ import annotations

import math
from typing import Optional

#: Pixels per latent pixel of the SD2.1 VAE (it works on 8x8 blocks).
VAE_SCALE = 8

#: Largest width / height the nodes offer (ComfyUI's MAX_RESOLUTION).
MAX_PIXELS = 8192

#: MS-Vid2Vid-XL widths are multiples of this many pixels (3 downsamplings of the latent, times the VAE's 8).
REFINER_WIDTH_STEP = 64

#: Downsampling levels of the MS-Vid2Vid-XL network (the real and the tiny configurations).
REFINER_LEVELS = 3


def pixel_size_error(width: Optional[int], height: Optional[int], *, minimum: int = 64,
                     maximum: int = MAX_PIXELS, multiple: int = VAE_SCALE) -> Optional[str]:
    """A user-facing message when width/height are not usable pixel sizes, else None (unknown values pass)."""
    for name, value in (("width", width), ("height", height)):
        if value is None:
            continue
        if not isinstance(value, int):
            return f"{name} must be an integer number of pixels, got {value!r}"
        if value < minimum or value > maximum:
            return f"{name} {value} is outside {minimum}..{maximum} pixels"
        if value % multiple:
            lo = value - value % multiple
            return (f"{name} {value} is not a multiple of {multiple} pixels (the VAE works on 8x8 blocks); "
                    f"use {lo} or {lo + multiple}")
    return None


def padded_height_ok(latent_height: int, levels: int = REFINER_LEVELS) -> bool:
    """Whether MS-Vid2Vid-XL's padded downsampling round-trips latent height h through `levels` levels: h must be
    even at each level (next = floor((h + 1) / 2) + 1), i.e. h = 2 (mod 8) for 3 levels; 720px -> 90 works, 704px
    -> 88 does not."""
    h = int(latent_height)
    if h < 2:
        return False
    for _ in range(levels):
        if h % 2:
            return False
        h = (h + 1) // 2 + 1
    return True


def nearest_padded_height(latent_height: float, levels: int = REFINER_LEVELS) -> int:
    """The latent height closest to `latent_height` that :func:`padded_height_ok` accepts; ties go to the larger.

    Valid heights repeat every 2**levels, so the search ends within that distance (never below 2, the smallest)."""
    target = float(latent_height)
    below = max(2, math.floor(target))
    while below > 2 and not padded_height_ok(below, levels):
        below -= 1
    above = max(2, math.ceil(target))
    while not padded_height_ok(above, levels):
        above += 1
    if not padded_height_ok(below, levels):
        return above
    return above if above - target <= target - below else below


def snap_refiner_size(width: float, height: float) -> tuple[int, int]:
    """Nearest pixel size MS-Vid2Vid-XL accepts: width a multiple of 64 (halves round up), latent height = 2 (mod 8)
    (ties go to the larger); never less than the smallest valid size (64 x 16)."""
    w = max(REFINER_WIDTH_STEP, int(math.floor(width / REFINER_WIDTH_STEP + 0.5)) * REFINER_WIDTH_STEP)
    return w, nearest_padded_height(height / VAE_SCALE) * VAE_SCALE


def refiner_size_ok(width: int, height: int) -> bool:
    """Whether MS-Vid2Vid-XL takes this pixel size as it is (snap_refiner_size leaves it unchanged)."""
    return width % VAE_SCALE == 0 and height % VAE_SCALE == 0 and snap_refiner_size(width, height) == (width, height)


def check_latent_size(config, height: int, width: int) -> None:
    """Raise a ValueError with a fix when a latent of height x width cannot go through the network of `config`
    (a ``UNetConfig``: its number of levels and whether it pads like MS-Vid2Vid-XL)."""
    if height < 1 or width < 1:
        raise ValueError("latent height and width must be positive")
    if not config.vid2vid_pad:
        return
    levels = len(config.block_channels) - 1
    step = 2 ** levels
    if width % step:
        raise ValueError(f"width {width * VAE_SCALE}px (latent {width}) does not fit MS-Vid2Vid-XL: the width must "
                         f"be a multiple of {step * VAE_SCALE}px")
    if not padded_height_ok(height, levels):
        near = nearest_padded_height(height, levels)
        raise ValueError(f"height {height * VAE_SCALE}px (latent {height}) does not fit MS-Vid2Vid-XL's padded "
                         f"downsampling; the nearest height that works is {near * VAE_SCALE}px (latent {near})")

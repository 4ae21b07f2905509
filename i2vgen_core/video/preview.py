"""Cheap previews of a whole video latent: latent -> RGB for every frame, laid out as one sprite sheet.

Pure torch. The ComfyUI side (nodes/preview.py) sends the sheet to the browser, which cuts it back into frames and
animates them; one image per sampling step keeps the cost to one small tensor product and one JPEG.
"""

from __future__ import annotations

import math

import torch

#: SD 1.x/2.x latent -> RGB factors (rows: latent channels, columns: R, G, B), the common approximation of the
#: SD VAE decoder used for live previews; the input is the scaled latent (x 0.18215), the output roughly -1..1.
SD_LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)

#: Largest side of the whole sheet in pixels (JPEG and browser canvases are comfortable below this).
MAX_SHEET_SIDE = 4096


def sheet_grid(frames: int) -> tuple[int, int]:
    """(columns, rows) of a near-square grid holding `frames` tiles."""
    if frames < 1:
        raise ValueError(f"a preview needs at least one frame, got {frames}")
    cols = math.ceil(math.sqrt(frames))
    return cols, math.ceil(frames / cols)


def latent_to_rgb(latent: torch.Tensor, factors=SD_LATENT_RGB_FACTORS, bias=None) -> torch.Tensor:
    """[C, F, h, w] latent of one video -> [F, h, w, 3] RGB in about -1..1 (linear latent -> RGB map)."""
    if latent.ndim != 4:
        raise ValueError(f"expected one video latent [channels, frames, h, w], got shape {tuple(latent.shape)}")
    weight = torch.as_tensor(factors, dtype=latent.dtype, device=latent.device)
    if weight.shape != (latent.shape[0], 3):
        raise ValueError(f"latent has {latent.shape[0]} channels but the RGB factors are {tuple(weight.shape)}")
    rgb = latent.movedim(0, -1) @ weight
    if bias is not None:
        rgb = rgb + torch.as_tensor(bias, dtype=latent.dtype, device=latent.device)
    return rgb


def fit_frames(frames: torch.Tensor, max_side: int) -> torch.Tensor:
    """[F, H, W, 3] -> the same frames shrunk (never enlarged) so that H and W are at most `max_side`."""
    h, w = frames.shape[1:3]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return frames
    size = (max(1, int(h * scale)), max(1, int(w * scale)))
    out = torch.nn.functional.interpolate(frames.movedim(-1, 1).float(), size=size, mode="bilinear",
                                          antialias=True, align_corners=False)
    return out.movedim(1, -1).to(frames.dtype)


def sprite_sheet(frames: torch.Tensor, max_frame_side: int = 512,
                 max_sheet_side: int = MAX_SHEET_SIDE) -> tuple[torch.Tensor, int, int]:
    """[F, H, W, 3] frames in -1..1 -> ([rows*H', cols*W', 3] uint8 sheet on the CPU, cols, rows), row-major tiles.

    Frames are shrunk so that one is at most `max_frame_side` and the sheet at most `max_sheet_side` on a side;
    unused tiles at the end stay black.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [F, H, W, 3], got shape {tuple(frames.shape)}")
    count = frames.shape[0]
    cols, rows = sheet_grid(count)
    frames = fit_frames(frames, min(max_frame_side, max_sheet_side // cols, max_sheet_side // rows))
    h, w = frames.shape[1:3]
    pixels = ((frames.float() + 1.0) * 127.5).clamp_(0, 255).to(torch.uint8).cpu()
    if cols * rows != count:
        pixels = torch.cat([pixels, pixels.new_zeros(cols * rows - count, h, w, 3)])
    sheet = pixels.view(rows, cols, h, w, 3).permute(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    return sheet, cols, rows

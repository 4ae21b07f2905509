"""The frame axis of videos and video latents: frame-count resampling and the image latent's single frame."""

from __future__ import annotations

import torch


def image_latent_frame(latent: torch.Tensor) -> torch.Tensor:
    """An image latent as [B, C, h, w]: the first frame of a 5-D [B, C, F, h, w] latent, 4-D ones as they are."""
    return latent[:, :, 0] if latent.ndim == 5 else latent


def resample_frames(video: torch.Tensor, frames: int, mode: str = "repeat", dim: int = 2) -> torch.Tensor:
    """Change the number of frames along `dim`: 'repeat' picks nearest earlier frames (2x = each frame twice),
    'interpolate' blends neighbours linearly with the first and last frames kept."""
    n = video.shape[dim]
    if frames < 1:
        raise ValueError(f"target frame count must be at least 1, got {frames}")
    if frames == n:
        return video
    if mode == "repeat":
        idx = torch.floor(torch.arange(frames, dtype=torch.float64) * n / frames).long().clamp(max=n - 1)
        return video.index_select(dim, idx.to(video.device))
    if mode == "interpolate":
        if n == 1:
            return video.repeat_interleave(frames, dim=dim)
        pos = torch.linspace(0, n - 1, frames, dtype=torch.float64)
        lo = pos.floor().long().clamp(max=n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        t = (pos - lo.double()).to(video.dtype).to(video.device)
        shape = [1] * video.ndim
        shape[dim] = frames
        a = video.index_select(dim, lo.to(video.device))
        b = video.index_select(dim, hi.to(video.device))
        return a + (b - a) * t.view(shape)
    raise ValueError(f"unknown frame mode {mode!r}; expected 'repeat' or 'interpolate'")

"""Long videos: temporal window plans and blend weights, windowed UNet calls, clip joining and colour matching.

Pure torch. The ComfyUI nodes hand :func:`window_plan` and :func:`blend_weights` to ComfyUI's context-window handler;
:class:`WindowedUNet` does the same windowing around a bare core UNet (for the core pipeline and the benchmarks).

Video tensors are ``[B, C, F, H, W]`` (latents, or pixels laid out the same way) unless a function says otherwise.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["COLOR_MATCH_MODES", "WindowedUNet", "blend_weights", "check_window", "extended_length", "join_clips",
           "match_color", "match_color_ramped", "mean_color_drift", "window_plan", "window_weights"]

#: Colour matching modes of :func:`match_color`: off, per-channel mean (colour), mean and std (colour + contrast).
COLOR_MATCH_MODES = ("off", "mean", "mean_std")


# ----------------------------------------------------------------------------------------------- windows
def check_window(window: int, overlap: int) -> Optional[str]:
    """A user-facing message when (window, overlap) cannot tile a video, else None."""
    if window < 1:
        return f"the context window must be at least 1 frame, got {window}"
    if overlap < 0 or overlap >= window:
        return (f"the context overlap must be between 0 and window - 1 = {window - 1} frames, got {overlap}; "
                f"a quarter of the window (e.g. 8 of 32) is a good start")
    return None


def window_plan(num_frames: int, window: int, overlap: int) -> list[list[int]]:
    """Frame indices of each window: ``window`` consecutive frames, as few windows as give every neighbour pair at
    least ``overlap`` shared frames, their starts spread evenly from the first frame to the last window ending on
    the last frame (so overlaps are equal up to rounding). One window when the video fits."""
    problem = check_window(window, overlap)
    if problem:
        raise ValueError(problem)
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if num_frames <= window:
        return [list(range(num_frames))]
    count = 1 + -(-(num_frames - window) // (window - overlap))
    starts = [round(i * (num_frames - window) / (count - 1)) for i in range(count)]
    return [list(range(s, s + window)) for s in starts]


def blend_weights(plan: list[list[int]], num_frames: int) -> list[torch.Tensor]:
    """Per-window float64 weights (one per window frame) that sum to exactly 1 on every frame.

    Inside a window a frame weighs 1 except near an edge shared with another window, where the weight ramps
    linearly (1/(n+1) ... n/(n+1) over an n-frame overlap), so overlaps cross-fade; edges at the video's first or
    last frame are not ramped. Every frame must be covered by the plan.
    """
    raw = []
    for idx in plan:
        n = len(idx)
        pos = torch.arange(n, dtype=torch.float64)
        w = torch.ones(n, dtype=torch.float64)
        first, last = min(idx), max(idx)
        before = [max(o) for o in plan if min(o) < first]  # windows starting earlier: ramp up over the shared part
        after = [min(o) for o in plan if max(o) > last]
        if first > 0 and before:
            left = min(n, max(0, max(before) - first + 1))
            w = torch.minimum(w, (pos + 1) / (left + 1))
        if last < num_frames - 1 and after:
            right = min(n, max(0, last - min(after) + 1))
            w = torch.minimum(w, (n - pos) / (right + 1))
        raw.append(w)
    total = torch.zeros(num_frames, dtype=torch.float64)
    for idx, w in zip(plan, raw):
        total[idx] += w
    if bool((total <= 0).any()):
        missing = torch.nonzero(total <= 0).flatten().tolist()
        raise ValueError(f"the window plan leaves frames {missing[:8]} uncovered")
    return [w / total[idx] for idx, w in zip(plan, raw)]


def window_weights(index_list: list[int], num_frames: int, window: int, overlap: int) -> torch.Tensor:
    """The :func:`blend_weights` of the window of ``window_plan(num_frames, window, overlap)`` holding exactly
    ``index_list`` (what a fuse callback that only sees one window needs)."""
    plan = window_plan(num_frames, window, overlap)
    for idx, w in zip(plan, blend_weights(plan, num_frames)):
        if idx == list(index_list):
            return w
    raise ValueError(f"frames {index_list[:3]}...{index_list[-3:]} are not a window of the {num_frames}-frame plan "
                     f"(window {window}, overlap {overlap})")


class WindowedUNet:
    """A core UNet called window by window along the frame axis, outputs cross-faded with :func:`blend_weights`.

    Drop-in for the ``unet`` argument of :func:`i2vgen_core.diffusion.pipeline.run_refine_stage` (attributes are the wrapped
    network's): activations are those of one ``window``-frame call, whatever the video length. Conditioning is
    shared by all windows (text, CLIP image embedding, image latent and fps are per video, not per frame).
    """

    def __init__(self, unet: torch.nn.Module, window: int, overlap: int):
        problem = check_window(window, overlap)
        if problem:
            raise ValueError(problem)
        self.unet, self.window, self.overlap = unet, int(window), int(overlap)

    def __getattr__(self, name: str):
        return getattr(self.unet, name)

    def __call__(self, sample: torch.Tensor, timestep, **conds) -> torch.Tensor:
        """The wrapped UNet's output for ``sample`` [B, C, F, h, w], computed one window at a time."""
        frames = sample.shape[2]
        plan = window_plan(frames, self.window, self.overlap)
        if len(plan) == 1:
            return self.unet(sample, timestep, **conds)
        out = None
        for idx, w in zip(plan, blend_weights(plan, frames)):
            part = self.unet(sample[:, :, idx], timestep, **conds)
            if out is None:
                out = torch.zeros(part.shape[:2] + (frames,) + part.shape[3:], dtype=torch.float32,
                                  device=part.device)
            out[:, :, idx] += part.float() * w.to(part.device, torch.float32).view(1, 1, -1, 1, 1)
        return out.to(sample.dtype)


# ----------------------------------------------------------------------------------------------- clips
def extended_length(first: int, clip: int, extensions: int) -> int:
    """Frames after ``extensions`` joins of ``clip``-frame clips to a ``first``-frame video (each new clip's frame 0
    repeats the conditioning frame and is dropped): ``first + extensions * (clip - 1)``."""
    return first + extensions * max(0, clip - 1)


def join_clips(previous: torch.Tensor, new: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """``previous`` followed by ``new`` without its frame 0 (the conditioning frame again) along ``dim``."""
    if previous.shape[:dim] != new.shape[:dim] or previous.shape[dim + 1:] != new.shape[dim + 1:]:
        raise ValueError(f"cannot join clips of shapes {tuple(previous.shape)} and {tuple(new.shape)}: only the "
                         f"frame axis ({dim}) may differ")
    return torch.cat([previous, new.narrow(dim, 1, new.shape[dim] - 1).to(previous.dtype)], dim=dim)


def _moments(x: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(batch, channel) mean and std over every other axis, shaped to broadcast against ``x``."""
    dims = [d for d in range(x.ndim) if d not in (0, channel_dim % x.ndim)]
    xf = x.float()
    return xf.mean(dim=dims, keepdim=True), xf.std(dim=dims, keepdim=True, unbiased=False)


def match_color(clip: torch.Tensor, reference: torch.Tensor, mode: str = "mean_std", channel_dim: int = 1,
                eps: float = 1e-5) -> torch.Tensor:
    """``clip`` with each channel's mean (and for ``mean_std`` its std) set to ``reference``'s, per batch item.

    Axis 0 is the batch; statistics are over every axis but 0 and ``channel_dim``, so the two tensors may differ
    in frame count and size. Linear per channel: in a latent or linear colour space it moves colour (mean) and
    contrast (std) back to the reference without touching motion or detail.
    """
    if mode not in COLOR_MATCH_MODES:
        raise ValueError(f"unknown colour matching mode {mode!r}; expected one of {', '.join(COLOR_MATCH_MODES)}")
    if mode == "off":
        return clip
    if clip.shape[0] != reference.shape[0] or clip.shape[channel_dim] != reference.shape[channel_dim]:
        raise ValueError(f"colour matching needs the same batch and channels, got {tuple(clip.shape)} and "
                         f"{tuple(reference.shape)}")
    mu, sd = _moments(clip, channel_dim)
    ref_mu, ref_sd = _moments(reference, channel_dim)
    x = clip.float()
    if mode == "mean":
        out = x - mu + ref_mu
    else:
        out = (x - mu) * (ref_sd / sd.clamp_min(eps)) + ref_mu
    return out.to(clip.dtype)


def match_color_ramped(clip: torch.Tensor, reference: torch.Tensor, mode: str = "mean_std", frame_dim: int = 2,
                       tail: float = 0.25, channel_dim: int = 1) -> torch.Tensor:
    """Colour matching for a clip that continues from its frame 0: no change at frame 0, full at the last frame.

    The per-channel affine map that takes the statistics of the clip's last ``tail`` fraction of frames (at least
    one) to ``reference``'s is applied with a weight rising linearly from 0 (frame 0, the conditioning frame) to 1
    (last frame). The join stays continuous and the last frame, which conditions the next extension, carries no
    drift forward; whole-clip :func:`match_color` would instead shift frame 1 away from the frame before it.
    """
    if mode not in COLOR_MATCH_MODES:
        raise ValueError(f"unknown colour matching mode {mode!r}; expected one of {', '.join(COLOR_MATCH_MODES)}")
    frames = clip.shape[frame_dim]
    if mode == "off" or frames < 2:
        return clip
    k = max(1, int(round(frames * tail)))
    mu, sd = _moments(clip.narrow(frame_dim, frames - k, k), channel_dim)
    ref_mu, ref_sd = _moments(reference, channel_dim)
    scale = (ref_sd / sd.clamp_min(1e-5)) if mode == "mean_std" else torch.ones_like(mu)
    shift = ref_mu - mu * scale
    shape = [1] * clip.ndim
    shape[frame_dim] = frames
    ramp = torch.linspace(0.0, 1.0, frames, device=clip.device).view(shape)
    x = clip.float()
    return (x + ramp * (x * (scale - 1.0) + shift)).to(clip.dtype)


def mean_color_drift(clip: torch.Tensor, reference: torch.Tensor, channel_dim: int = 1) -> float:
    """Mean over batch and channels of |channel mean of ``clip`` - channel mean of ``reference``|."""
    return float((_moments(clip, channel_dim)[0] - _moments(reference, channel_dim)[0]).abs().mean())

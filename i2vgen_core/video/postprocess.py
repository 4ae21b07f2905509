"""Post-processing of decoded videos as the original pipelines did it: the grey last-frame check."""

from __future__ import annotations

import torch

#: The known grey last frame (VGen ``save_i2vgen_video_safe``): > 40 % of the 8-bit values lie in [117, 137].
GREY_LOW, GREY_HIGH, GREY_RATIO = 117, 137, 0.4


def is_grey_frame(frame: torch.Tensor, *, low: int = GREY_LOW, high: int = GREY_HIGH,
                  ratio: float = GREY_RATIO) -> bool:
    """The original's test for its grey last-frame artifact: more than `ratio` of the frame's 8-bit values
    (all channels, truncated as ``astype(uint8)``) lie in [low, high]."""
    values = torch.floor(frame.detach().float().clamp(0.0, 1.0) * 255.0)
    inside = ((values >= low) & (values <= high)).float().mean().item()
    return inside > ratio

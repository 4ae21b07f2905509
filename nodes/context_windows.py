"""Temporal context windows on the pack's MODEL through ComfyUI's own handler (comfy/context_windows.py).

ComfyUI's ``IndexListContextHandler`` (what the core node ContextWindowsManual installs) sits in
``model_options["context_handler"]``; each sampling step it evaluates the model window by window and fuses the
outputs. We give it the pack's window plan and cross-fade weights (``i2vgen_core.video.long_video``) on the frame axis
(dim 2 of ``[B, 4, F, h, w]``), so peak activation memory is that of one window whatever the video length.
"""

from __future__ import annotations

from ..i2vgen_core.video.long_video import check_window, window_plan, window_weights

#: Frame axis of the pack's video latents.
FRAME_DIM = 2
SCHEDULE_NAME = "i2vgen_even"
FUSE_NAME = "i2vgen_crossfade"


def _schedule(num_frames: int, handler, model_options: dict) -> list[list[int]]:
    return window_plan(num_frames, handler.context_length, handler.context_overlap)


def _fuse(length: int, full_length: int = 0, idxs: list[int] | None = None, handler=None, **kwargs) -> list[float]:
    return window_weights(list(idxs), full_length, handler.context_length, handler.context_overlap).tolist()


def with_context_windows(model, frames: int, overlap: int, what: str = "I2VGen-XL"):
    """A clone of the MODEL `model` that samples videos longer than `frames` in overlapping windows."""
    problem = check_window(int(frames), int(overlap))
    if problem:
        raise ValueError(f"{what}: {problem}.")
    import comfy.context_windows as cw

    handler = cw.IndexListContextHandler(
        context_schedule=cw.ContextSchedule(SCHEDULE_NAME, _schedule),
        fuse_method=cw.ContextFuseMethod(FUSE_NAME, _fuse),
        context_length=int(frames), context_overlap=int(overlap), context_stride=1, closed_loop=False,
        dim=FRAME_DIM)
    model = model.clone()
    model.model_options["context_handler"] = handler
    cw.create_prepare_sampling_wrapper(model)  # memory estimate for one window, not the whole video
    return model


def windows_batch_problem(samples, frames: int) -> str | None:
    """ComfyUI 0.3.64's handler indexes the per-item timestep with frame indices, so a windowed run needs batch 1."""
    if frames > 0 and samples.shape[0] > 1 and samples.shape[FRAME_DIM] > frames:
        return (f"context windows sample one video at a time, but this latent holds {samples.shape[0]} videos; split "
                f"it with 'Latent From Batch' (batch_index, length 1) or set context_frames to 0")
    return None

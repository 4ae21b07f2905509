"""Small helpers shared by the nodes: ComfyUI access, progress, VAE frame batches, input checks."""

from __future__ import annotations

import logging
from typing import Iterator

import torch

from ..i2vgen_core.config import variant_config
from ..i2vgen_core.video.preprocess import resize_video_bilinear
from ..i2vgen_core.sizes import MAX_PIXELS, pixel_size_error
from ..i2vgen_core.text import CONTEXT_LENGTH
from .numerics import check_output

LOG = logging.getLogger("i2vgen-xl")

CATEGORY_CONDITIONING = "I2VGen-XL/conditioning"
CATEGORY_LATENT = "I2VGen-XL/latent"
CATEGORY_VIDEO = "I2VGen-XL/video"

MAX_RESOLUTION = MAX_PIXELS

# Conditioning keys I2VGenXLConditioning writes and the model's extra_conds reads (the node contract).
COND_IMAGE_EMBEDDING = "i2vgen_image_embedding"
COND_IMAGE_LATENT = "i2vgen_image_latent"
COND_FPS = "i2vgen_fps"
# Conditioning sizes the released models take: open_clip's 77 tokens, and the widths every family member's
# full-size configuration shares.
TEXT_TOKENS = CONTEXT_LENGTH
TEXT_DIM = variant_config("i2vgen_xl").context_dim
IMAGE_EMBED_DIM = variant_config("i2vgen_xl").image_embedding_dim


def comfy_utils():
    """ComfyUI's comfy.utils (imported lazily so this package imports outside ComfyUI too)."""
    import comfy.utils
    return comfy.utils


def check_interrupt() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel (no-op outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def server_routes():
    """(ComfyUI's running server's aiohttp route table, aiohttp.web), or None outside a ComfyUI server."""
    try:
        import server as comfy_server
        from aiohttp import web
    except ImportError:
        return None
    instance = getattr(comfy_server.PromptServer, "instance", None)
    return None if instance is None else (instance.routes, web)


def intermediate_device() -> torch.device:
    """Where ComfyUI keeps tensors between nodes (CPU unless --gpu-only)."""
    try:
        import comfy.model_management as mm
        return mm.intermediate_device()
    except ImportError:
        return torch.device("cpu")


class Progress:
    """A ComfyUI ProgressBar that also checks for Cancel on every step; silent outside ComfyUI."""

    def __init__(self, total: int):
        self.total = max(1, int(total))
        try:
            self._bar = comfy_utils().ProgressBar(self.total)
        except ImportError:
            self._bar = None

    def step(self, n: int = 1) -> None:
        """Advance by n steps and honour Cancel."""
        check_interrupt()
        if self._bar is not None:
            self._bar.update(n)


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering range(n) in pieces of at most `size`."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield start, min(n, start + size)


def encode_frames(vae, frames: torch.Tensor, width: int, height: int, per: int, progress: "Progress", *,
                  crop: bool = False) -> torch.Tensor:
    """[F, H, W, 3] pixels -> [F, 4, height/8, width/8] raw latents: bilinear resize (as MS-Vid2Vid-XL's pipeline),
    then VAE-encode, `per` frames at a time (Cancel honoured between chunks)."""
    out = []
    for start, stop in chunks(frames.shape[0], per):
        check_interrupt()
        piece = resize_video_bilinear(frames[start:stop].float(), int(width), int(height), crop=crop)
        out.append(vae.encode(piece).to(intermediate_device()))
        progress.step()
    return torch.cat(out, dim=0)


def decode_frames(vae, latents: torch.Tensor, per: int, progress: "Progress", *,
                  tile_size: int | None = None) -> torch.Tensor:
    """[F, 4, h, w] raw latents -> [F, H, W, 3] pixels, VAE-decoded `per` frames at a time (Cancel honoured between
    chunks); with `tile_size` (pixels) each chunk is decoded in spatial tiles (ComfyUI's tiled decode)."""
    out = []
    for start, stop in chunks(latents.shape[0], per):
        check_interrupt()
        piece = latents[start:stop]
        if tile_size:
            images = vae.decode_tiled(piece, tile_x=tile_size // 8, tile_y=tile_size // 8,
                                      overlap=max(1, tile_size // 64))
        else:
            images = vae.decode(piece)
        out.append(images.reshape(-1, *images.shape[-3:]).to(intermediate_device()))
        progress.step()
    video = torch.cat(out, dim=0)
    check_output(video, "decode")
    return video


def check_pixel_size(node: str, width: int, height: int, *, minimum: int = 64) -> None:
    """Raise the node's ValueError when width/height are not usable pixel sizes (i2vgen_core.sizes' rule)."""
    err = pixel_size_error(width, height, minimum=minimum)
    if err:
        raise ValueError(f"{node}: {err}")


def single_image(image: torch.Tensor, what: str) -> torch.Tensor:
    """Check a ComfyUI IMAGE holds exactly one RGB(A) picture; return it as [1, H, W, 3] float."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise ValueError(f"{what}: expected an IMAGE [batch, height, width, channels], got "
                         f"{getattr(image, 'shape', type(image))}")
    if image.shape[0] != 1:
        raise ValueError(f"{what}: got a batch of {image.shape[0]} images but the model is conditioned on exactly "
                         f"one; pick one with the 'ImageFromBatch' node (batch_index, length 1)")
    if image.shape[-1] < 3:
        raise ValueError(f"{what}: the image has {image.shape[-1]} channel(s); an RGB image is needed")
    return image[..., :3].float()


def video_latent(latent: dict, what: str = "latent_image") -> torch.Tensor:
    """The [batch, 4, frames, h, w] samples of a LATENT, or a ValueError that says what is expected."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise ValueError(f"{what}: expected a LATENT (a dict with 'samples'); connect a video LATENT.")
    if samples.ndim != 5:
        raise ValueError(f"{what}: expected a video latent [batch, 4, frames, height/8, width/8] (from "
                         f"I2VGenXLConditioning, I2VGenXLVideoEncode or I2VGenXLLatentUpscale), got shape "
                         f"{list(samples.shape)}" + ("; image latents (from VAE Encode / Empty Latent Image) have no "
                                                     "frame axis" if samples.ndim == 4 else "") + ".")
    if samples.shape[1] != 4:
        raise ValueError(f"{what}: the latent has {samples.shape[1]} channels; the SD2.1 VAE used by I2VGen-XL has 4.")
    if samples.shape[0] < 1 or samples.shape[2] < 1:
        raise ValueError(f"{what} has {samples.shape[0]} videos of {samples.shape[2]} frames; it needs at least one "
                         f"video of at least one frame.")
    return samples

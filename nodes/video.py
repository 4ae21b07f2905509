"""Video decoding: a video latent to IMAGE frames, a few frames at a time, optionally tiled."""

from __future__ import annotations

import torch

from ..i2vgen_core import preprocess as pre
from ..i2vgen_core.numerics import check_finite
from .common import CATEGORY_VIDEO, LOG, Progress, check_interrupt, chunks, intermediate_device


class I2VGenXLVideoDecode:
    """Decodes an I2VGen-XL video latent with the SD2.1 VAE in bounded frame batches."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "The SD2.1 VAE."}),
                "samples": ("LATENT", {"tooltip": "Video latent [batch, 4, frames, h, w]."}),
                "frames_per_batch": ("INT", {"default": 2, "min": 1, "max": 256,
                                             "tooltip": "Frames decoded at once (the original decodes 2); lower "
                                                        "uses less memory, higher can be faster."}),
                "tile": ("BOOLEAN", {"default": False,
                                     "tooltip": "Decode each frame in spatial tiles (ComfyUI's tiled VAE decode): "
                                                "much less memory at 720p, slower, may show faint seams."}),
                "tile_size": ("INT", {"default": 512, "min": 128, "max": 4096, "step": 64,
                                      "tooltip": "Tile side in pixels when tile is on (overlap = tile_size / 8)."}),
                "drop_grey_last_frame": ("BOOLEAN", {"default": False,
                                                     "tooltip": "Drop the last frame when it is the known grey "
                                                                "artifact (> 40 % of its values in 117..137 of "
                                                                "255), as the original I2VGen-XL saver does."}),
                "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                                  "tooltip": "Playback frame rate passed on to Create Video. The originals write "
                                             "8 fps files (I2VGen-XL is conditioned on 16 but saved at 8)."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("Decoded frames [frames, height, width, 3] (all batch videos one after another).",
                       "The fps value, for Create Video.")
    FUNCTION = "decode"
    CATEGORY = CATEGORY_VIDEO
    DESCRIPTION = ("Decodes a video latent frame batch by frame batch (bounded memory, progress bar, cancellable), "
                   "optionally with spatial tiling. Connect images and fps to Create Video -> Save Video.")

    def decode(self, vae, samples, frames_per_batch: int, tile: bool, tile_size: int, drop_grey_last_frame: bool,
               fps: float):
        x = samples["samples"] if isinstance(samples, dict) else None
        if x is None or x.ndim not in (4, 5):
            raise ValueError("I2VGen-XL Video Decode: expected a LATENT [batch, 4, frames, h, w] "
                             "(or [frames, 4, h, w])")
        if x.ndim == 4:
            x = x.movedim(0, 1).unsqueeze(0)
        if x.shape[1] != 4:
            raise ValueError(f"I2VGen-XL Video Decode: the latent has {x.shape[1]} channels; the SD2.1 VAE needs 4")
        b, _, f = x.shape[:3]
        per = max(1, int(frames_per_batch))
        progress = Progress(b * -(-f // per))
        device = intermediate_device()
        tile_px = max(64, int(tile_size))
        videos = []
        for i in range(b):
            frames = x[i].movedim(1, 0)  # [F, 4, h, w]
            out = []
            for start, stop in chunks(f, per):
                check_interrupt()
                piece = frames[start:stop]
                if tile:
                    images = vae.decode_tiled(piece, tile_x=tile_px // 8, tile_y=tile_px // 8,
                                              overlap=max(1, tile_px // 64))
                else:
                    images = vae.decode(piece)
                out.append(images.reshape(-1, *images.shape[-3:]).to(device))
                progress.step()
            video = torch.cat(out, dim=0)
            check_finite(video, "decode")
            if drop_grey_last_frame and video.shape[0] > 1 and pre.is_grey_frame(video[-1]):
                LOG.info("I2VGen-XL Video Decode: dropped the grey last frame of video %d", i)
                video = video[:-1]
            videos.append(video)
        return (torch.cat(videos, dim=0), float(fps))


NODE_CLASS_MAPPINGS = {"I2VGenXLVideoDecode": I2VGenXLVideoDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"I2VGenXLVideoDecode": "I2VGen-XL Video Decode"}

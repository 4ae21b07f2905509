"""Video decoding: a video latent to IMAGE frames, a few frames at a time, optionally tiled."""

from __future__ import annotations

import torch

from ..i2vgen_core.video.postprocess import is_grey_frame
from .common import CATEGORY_VIDEO, LOG, Progress, decode_frames, video_latent


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
        x = video_latent(samples, "I2VGen-XL Video Decode")
        b, _, f = x.shape[:3]
        per = max(1, int(frames_per_batch))
        progress = Progress(b * -(-f // per))
        tile_px = max(64, int(tile_size)) if tile else None
        videos = []
        for i in range(b):
            video = decode_frames(vae, x[i].movedim(1, 0), per, progress, tile_size=tile_px)  # [F, H, W, 3]
            if drop_grey_last_frame and video.shape[0] > 1 and is_grey_frame(video[-1]):
                LOG.info("I2VGen-XL Video Decode: dropped the grey last frame of video %d", i)
                video = video[:-1]
            videos.append(video)
        return (torch.cat(videos, dim=0), float(fps))


NODE_CLASS_MAPPINGS = {"I2VGenXLVideoDecode": I2VGenXLVideoDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"I2VGenXLVideoDecode": "I2VGen-XL Video Decode"}

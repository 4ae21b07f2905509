"""Latent-space utilities of the cascade: resize a base-stage video latent for the MS-Vid2Vid-XL refiner."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..i2vgen_core.video.frames import resample_frames
from ..i2vgen_core.sizes import VAE_SCALE, pixel_size_error, snap_refiner_size
from .common import (CATEGORY_LATENT, LOG, MAX_RESOLUTION, Progress, check_pixel_size, decode_frames,
                     encode_frames, intermediate_device, video_latent)


class I2VGenXLLatentUpscale:
    """Resizes a video latent (space and, optionally, time) for the refinement stage."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "Video latent [batch, 4, frames, h, w] from the base stage."}),
                "width": ("INT", {"default": 1280, "min": 64, "max": MAX_RESOLUTION, "step": 8,
                                  "tooltip": "Target width in pixels (MS-Vid2Vid-XL: multiple of 64)."}),
                "height": ("INT", {"default": 720, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                                   "tooltip": "Target height in pixels. MS-Vid2Vid-XL needs height/8 = 2 (mod 8): "
                                              "720 works, 704 does not; with snap_for_refiner the nearest such "
                                              "height is used."}),
                "mode": (["pixel", "latent"], {"default": "pixel",
                                               "tooltip": "pixel: decode, bilinear resize, re-encode (how the "
                                                          "refiner was trained; needs the VAE). latent: bilinear "
                                                          "resize of the latent (fast, blurrier)."}),
                "frames": ("INT", {"default": 0, "min": 0, "max": 1024,
                                   "tooltip": "Target frame count; 0 keeps the current count (e.g. 32 to refine "
                                              "a 16-frame I2VGen-XL video as the 32-frame refiner expects)."}),
                "frame_mode": (["repeat", "interpolate"], {"default": "repeat",
                                                           "tooltip": "How new frames are made: repeat "
                                                                      "neighbours or blend them linearly."}),
                "snap_for_refiner": ("BOOLEAN", {"default": True,
                                                 "tooltip": "Round width to a multiple of 64 and height to the "
                                                            "nearest size MS-Vid2Vid-XL accepts."}),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "The SD2.1 VAE; required for pixel mode."}),
                "frames_per_batch": ("INT", {"default": 4, "min": 1, "max": 256,
                                             "tooltip": "Frames decoded / encoded at once in pixel mode."}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The resized video latent.",)
    FUNCTION = "upscale"
    CATEGORY = CATEGORY_LATENT
    DESCRIPTION = ("Upscales a base-stage video latent (e.g. I2VGen-XL at 640x352 or MS-Image2Video at 448x256) to "
                   "the refiner's 1280x720, optionally changing the frame count, for I2VGen-XL Refine Sampler with "
                   "MS-Vid2Vid-XL.")

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None):
        return pixel_size_error(width, height, minimum=16) or True

    def upscale(self, samples, width: int, height: int, mode: str, frames: int, frame_mode: str,
                snap_for_refiner: bool, vae=None, frames_per_batch: int = 4):
        x = video_latent(samples, "I2VGen-XL Latent Upscale")
        if snap_for_refiner:
            new_w, new_h = snap_refiner_size(width, height)
            if (new_w, new_h) != (width, height):
                LOG.info("I2VGen-XL Latent Upscale: %dx%d snapped to %dx%d for MS-Vid2Vid-XL", width, height,
                         new_w, new_h)
            width, height = new_w, new_h
        check_pixel_size("I2VGen-XL Latent Upscale", width, height, minimum=16)
        h, w = height // VAE_SCALE, width // VAE_SCALE
        b, c, f = x.shape[:3]
        target_f = f if frames <= 0 else int(frames)
        if mode == "pixel":
            if vae is None:
                raise ValueError("I2VGen-XL Latent Upscale: pixel mode decodes and re-encodes the video, so connect "
                                 "the VAE (or switch mode to 'latent')")
            per = max(1, int(frames_per_batch))
            progress = Progress(b * (-(-f // per) + -(-target_f // per)))
            outs = []
            for i in range(b):
                pixels = decode_frames(vae, x[i].movedim(1, 0), per, progress)  # [F, H, W, 3]
                pixels = resample_frames(pixels, target_f, frame_mode, dim=0)
                outs.append(encode_frames(vae, pixels, width, height, per, progress).movedim(0, 1))
            out = torch.stack(outs, dim=0)
        elif mode == "latent":
            y = resample_frames(x, target_f, frame_mode, dim=2)
            flat = y.movedim(2, 1).reshape(b * target_f, c, *y.shape[-2:])
            flat = F.interpolate(flat.float(), size=(h, w), mode="bilinear", align_corners=False)
            out = flat.reshape(b, target_f, c, h, w).movedim(1, 2)
        else:
            raise ValueError(f"I2VGen-XL Latent Upscale: unknown mode {mode!r}; expected 'pixel' or 'latent'")
        result = {k: v for k, v in samples.items() if k not in ("samples", "noise_mask")}
        result["samples"] = out.contiguous().to(intermediate_device())
        return (result,)


NODE_CLASS_MAPPINGS = {"I2VGenXLLatentUpscale": I2VGenXLLatentUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"I2VGenXLLatentUpscale": "I2VGen-XL Latent Upscale (for refiner)"}

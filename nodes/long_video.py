"""Long videos: I2VGenXLExtend continues a video latent from its last frame with I2VGen-XL and joins the clips.

The encoders, the conditioning and the sampler are the pack's own nodes, called in sequence; what this module adds is
the hand-off of the last frame, the colour matching against the first clip and the join (``i2vgen_core.video.long_video``).
Refining a long video in temporal windows is an option of I2VGen-XL Refine Sampler (``nodes/context_windows.py``).
"""

from __future__ import annotations

import torch

from ..i2vgen_core.sizes import VAE_SCALE
from ..i2vgen_core.video import preprocess as pre
from ..i2vgen_core.video.long_video import COLOR_MATCH_MODES, join_clips, match_color_ramped
from .common import MAX_RESOLUTION, intermediate_device
from .encode import I2VGenXLConditioning, I2VGenXLDetailEncode, I2VGenXLSemanticEncode
from .common import video_latent
from .sampling import I2VGenXLSampler, model_variant, sampler_inputs

#: LATENT key remembering how many frames the first clip had (the colour reference of every later extension).
FIRST_CLIP_KEY = "i2vgen_first_clip_frames"
HANDOFFS = ("latent", "pixels")
WHAT = "I2VGen-XL Extend"


def _decode_one(vae, latent: torch.Tensor) -> torch.Tensor:
    """[1, 4, h, w] raw latent -> [1, H, W, 3] pixels."""
    images = vae.decode(latent)
    return images.reshape(-1, *images.shape[-3:])[:1].to(intermediate_device())


class I2VGenXLExtend:
    """Continues a video from its last frame: one more I2VGen-XL clip, colour-matched to the first, joined on."""

    DESCRIPTION = ("Extends a video latent by one clip: its last frame conditions a new I2VGen-XL clip (CLIP image "
                   "embedding of the decoded frame, and as image latent the frame's latent itself or its re-encoded "
                   "pixels), with the same prompt or a new one. The new clip's frame 0 repeats that frame and is "
                   "dropped, so a 16-frame video extended k times by 16-frame clips has 16 + 15k frames. Colour "
                   "matching pulls each new clip's per-channel latent mean (and std) back to the first clip's, fading "
                   "in over the clip so the join stays smooth, against the drift that builds up over extensions. "
                   "Chain several, then decode or refine (I2VGen-XL Refine Sampler with context_frames for long "
                   "videos).")
    CATEGORY = "I2VGen-XL/long video"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The input video followed by the new clip minus its first frame: [1, 4, frames + length - 1, "
                       "height/8, width/8].",)
    FUNCTION = "extend"

    @classmethod
    def INPUT_TYPES(cls):
        inputs = sampler_inputs(
            latent_tip="", steps=50, cfg=9.0, cfg_tip="Classifier-free guidance scale (9.0 for I2VGen-XL, as the base "
                                                      "sampler).", sampler="ddim", scheduler="ddim_uniform",
            scheduler_tip="How the steps are spread over the noise levels (ddim_uniform = the original DDIM).",
        )["required"]
        inputs["model"] = ("MODEL", {"tooltip": "The I2VGen-XL UNet (I2VGen-XL Model Loader) that made the video, "
                                                "or MS-Image2Video (CLIP image only; the join is then less exact)."})
        inputs["positive"] = ("CONDITIONING", {"tooltip": "Text prompt of the new clip (CLIP Text Encode with the SD2 "
                                                          "text encoder): the same as before or a new one."})
        inputs["negative"] = ("CONDITIONING", {"tooltip": "Negative prompt of the new clip."})
        inputs["seed"] = ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                  "tooltip": "Random seed of the new clip's starting noise."})
        order = ["model", "positive", "negative", "seed", "steps", "cfg", "sampler_name", "scheduler"]
        required = {
            "samples": ("LATENT", {"tooltip": "The video so far [1, 4, frames, h, w]: I2VGen-XL Sampler's output or "
                                              "another Extend's."}),
            "clip_vision": ("CLIP_VISION", {"tooltip": "OpenCLIP ViT-H/14 image encoder, as for I2VGen-XL Semantic "
                                                       "Encode."}),
            "vae": ("VAE", {"tooltip": "The SD2.1 VAE: decodes the last frame (for CLIP) and, with handoff "
                                       "'pixels', re-encodes it."}),
            **{k: inputs[k] for k in order},
            "length": ("INT", {"default": 16, "min": 2, "max": 1024,
                               "tooltip": "Frames of the new clip (16 for I2VGen-XL); the video grows by length - 1."}),
            "fps": ("INT", {"default": 16, "min": 1, "max": 120,
                            "tooltip": "Frame-rate condition (motion speed) of the new clip: 16 for I2VGen-XL, 8 for "
                                       "MS-Image2Video; use the value the first clip was made with."}),
            "color_match": (list(COLOR_MATCH_MODES), {"default": "mean_std", "tooltip":
                                                      "Pull the new clip back to the first clip's per-channel "
                                                      "latent statistics, fading in from 0 at the join to full at its "
                                                      "last frame (no jump at the join): mean_std = colour and "
                                                      "contrast, mean = colour only, off = none (colour and contrast "
                                                      "can drift over extensions)."}),
            "handoff": (list(HANDOFFS), {"default": "latent", "tooltip":
                                         "Image latent of the conditioning frame: latent = the video's last latent "
                                         "frame itself (no VAE round trip; only that frame is decoded, for CLIP); "
                                         "pixels = decode and re-encode it like a new input image (I2VGen-XL "
                                         "Detail Encode: one posterior draw, from this node's seed)."}),
        }
        optional = {
            "square_size": ("INT", {"default": pre.I2VGEN_CLIP_SQUARE, "min": pre.MIN_CLIP_SQUARE,
                                    "max": MAX_RESOLUTION, "step": 8,
                                    "tooltip": "Square the last frame is box-resized and centre-cropped to before "
                                               "CLIP's 224 px (as I2VGen-XL Semantic Encode; 1280 for I2VGen-XL)."}),
        }
        return {"required": required, "optional": optional}

    def extend(self, samples, clip_vision, vae, model, positive, negative, seed: int, steps: int, cfg: float,
               sampler_name: str, scheduler: str, length: int, fps: int, color_match: str = "mean_std",
               handoff: str = "latent", square_size: int = pre.I2VGEN_CLIP_SQUARE):
        model_variant(model)
        x = video_latent(samples, "samples")
        if x.shape[0] != 1:
            raise ValueError(f"{WHAT}: the latent holds {x.shape[0]} videos; extend one at a time (pick one with "
                             f"'Latent From Batch', batch_index and length 1).")
        if handoff not in HANDOFFS:
            raise ValueError(f"{WHAT}: handoff must be one of {', '.join(HANDOFFS)}, got {handoff!r}.")
        if int(length) < 2:
            raise ValueError(f"{WHAT}: length must be at least 2 frames (frame 0 repeats the last frame).")
        h, w = x.shape[-2:]
        width, height = int(w) * VAE_SCALE, int(h) * VAE_SCALE
        last = x[:, :, -1].float()
        frame = _decode_one(vae, last)
        (clip_out,) = I2VGenXLSemanticEncode().encode(clip_vision, frame, square_size=int(square_size))
        if handoff == "latent":
            image_latent = {"samples": last.clone()}
        else:
            (image_latent,) = I2VGenXLDetailEncode().encode(vae, frame, width, height, "sample", seed)
        conditioned = I2VGenXLConditioning().condition(width, height, int(length), int(fps), 1, positive=positive,
                                                       negative=negative, clip_vision_output=clip_out,
                                                       image_latent=image_latent)
        pos, neg, empty = conditioned["result"]  # the node also returns its memory estimate as UI text
        (new,) = I2VGenXLSampler().sample(model, pos, neg, empty, seed, steps, cfg, sampler_name, scheduler)
        clip = new["samples"].to(x.device)
        first = int(samples.get(FIRST_CLIP_KEY) or min(x.shape[2], int(length)))
        clip = match_color_ramped(clip, x[:, :, :first], color_match)
        out = {k: v for k, v in samples.items() if k not in ("samples", "noise_mask", "batch_index")}
        out["samples"] = join_clips(x, clip).contiguous()
        out[FIRST_CLIP_KEY] = first
        return (out,)


NODE_CLASS_MAPPINGS = {"I2VGenXLExtend": I2VGenXLExtend}
NODE_DISPLAY_NAME_MAPPINGS = {"I2VGenXLExtend": "I2VGen-XL Extend (continue a video)"}

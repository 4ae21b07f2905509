"""Image / video encoders and the conditioning node: the original I2VGen-XL preprocessing in front of ComfyUI's
own CLIP vision and VAE objects."""

from __future__ import annotations

import torch

from ..i2vgen_core.video import preprocess as pre
from ..i2vgen_core.video.frames import image_latent_frame
from ..i2vgen_core.video.posterior import POSTERIORS, check_posterior, posterior_error, posterior_sample
from ..i2vgen_core.weights.catalog import download_hint, files_for
from ..i2vgen_core.sizes import VAE_SCALE, pixel_size_error
from ..i2vgen_core.text import open_clip_ids
from .memory_ui import check_run
from .common import (CATEGORY_CONDITIONING, COND_FPS, COND_IMAGE_EMBEDDING, COND_IMAGE_LATENT, IMAGE_EMBED_DIM,
                     MAX_RESOLUTION, Progress, TEXT_DIM, TEXT_TOKENS, check_pixel_size, encode_frames,
                     intermediate_device, single_image)



def _size_inputs(width: int, height: int, note: str = "") -> dict:
    return {
        "width": ("INT", {"default": width, "min": 64, "max": MAX_RESOLUTION, "step": 8,
                          "tooltip": "Video width in pixels (multiple of 8)." + note}),
        "height": ("INT", {"default": height, "min": 64, "max": MAX_RESOLUTION, "step": 8,
                           "tooltip": "Video height in pixels (multiple of 8)." + note}),
    }


def size_from_image_latent(image_latent, width: int, height: int) -> tuple[int, int]:
    """The one-size rule: with an image latent connected, the video has its size; else the width/height given."""
    if image_latent is None:
        return int(width), int(height)
    lat = image_latent["samples"] if isinstance(image_latent, dict) else None
    if not isinstance(lat, torch.Tensor) or lat.ndim not in (4, 5):
        return int(width), int(height)  # the shape check in condition() reports it
    return int(lat.shape[-1]) * VAE_SCALE, int(lat.shape[-2]) * VAE_SCALE


def conditioning_estimate(*, width: int, height: int, length: int, batch: int, has_image_latent: bool,
                          has_clip_vision: bool, refuse: bool = True) -> list[str]:
    """The Conditioning node's memory estimate (when it runs, and before: nodes/estimate_routes.py) for the model it
    sets up: I2VGen-XL with an image latent (or neither input), MS-Image2Video with the CLIP image embedding alone."""
    variant = "i2vgen_xl" if has_image_latent or not has_clip_vision else "ms_image2video"
    return check_run("I2VGen-XL Conditioning", variant=variant, width=width, height=height, frames=length,
                     batch=batch, refuse=refuse)


def clip_bpe(clip):
    """The byte-pair encoder (cleaned text -> ids, no start/end) of a CLIP holding one OpenCLIP-H text encoder."""
    tokenizer = getattr(clip, "tokenizer", None)
    keys = list(clip.tokenize("")) if tokenizer is not None else []
    inner = getattr(getattr(tokenizer, f"clip_{keys[0]}", None), "tokenizer", None) if len(keys) == 1 else None
    if keys != ["h"] or inner is None:
        raise ValueError("I2VGen-XL Text Encode needs the OpenCLIP ViT-H/14 text encoder as a single CLIP: load the "
                         "hub's text_encoder (or open_clip_pytorch_model.bin) with CLIPLoader, type "
                         f"'stable_diffusion'; to get it: {download_hint(files_for('text_encoders')[0])}")
    return lambda text: inner(text, add_special_tokens=False)["input_ids"]


class I2VGenXLTextEncode:
    """Text conditioning tokenized exactly as the original (open_clip), encoded by ComfyUI's CLIP."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "OpenCLIP ViT-H/14 text encoder (CLIPLoader, type stable_diffusion)."}),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                "tooltip": "The prompt, taken literally: brackets and ':1.2' are text here, not "
                                           "ComfyUI emphasis, as in the original."}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("Text conditioning [1, 77, 1024] for I2VGen-XL Conditioning or the Refine Sampler.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY_CONDITIONING
    DESCRIPTION = ("Encodes a prompt with the tokens the original I2VGen-XL / ModelScope code gives it "
                   "(open_clip.tokenize: ftfy + HTML cleaning, lower case, 77 tokens, padded with 0). Unlike CLIP "
                   "Text Encode it reads no (emphasis:1.2) syntax and cleans curly quotes, ligatures, full-width "
                   "letters and &amp; entities as the original did; for plain prompts both give the same tokens.")

    def encode(self, clip, text: str):
        ids = open_clip_ids(text, clip_bpe(clip))
        cond, pooled = clip.encode_from_tokens({"h": [[(t, 1.0) for t in ids]]}, return_pooled=True)
        return ([[cond, {"pooled_output": pooled}]],)


class I2VGenXLSemanticEncode:
    """CLIP image embedding of the conditioning image, preprocessed exactly like the original."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_vision": ("CLIP_VISION", {"tooltip": "OpenCLIP ViT-H/14 image encoder (CLIP Vision Loader), "
                                                           "e.g. the hub's image_encoder or CLIP-ViT-H-14."}),
                "image": ("IMAGE", {"tooltip": "The conditioning image (one image)."}),
            },
            "optional": {
                "square_size": ("INT", {"default": pre.I2VGEN_CLIP_SQUARE, "min": pre.MIN_CLIP_SQUARE,
                                        "max": MAX_RESOLUTION, "step": 8,
                                        "tooltip": "Side of the square the image is box-resized and centre-cropped "
                                                   "to before the 224px bilinear resize. The originals use the video "
                                                   "width: 1280 for I2VGen-XL, 448 for MS-Image2Video."}),
            },
        }

    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    OUTPUT_TOOLTIPS = ("CLIP vision output; its image_embeds is the projected 1024-d embedding the UNet uses.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY_CONDITIONING
    DESCRIPTION = ("Encodes the conditioning image with CLIP the way I2VGen-XL was trained: box-filter resize to "
                   "cover a square, centre crop, bilinear resize to 224, CLIP normalisation. Use this instead of "
                   "'CLIP Vision Encode', whose bicubic shortest-side crop differs from the training pipeline.")

    def encode(self, clip_vision, image, square_size: int = pre.I2VGEN_CLIP_SQUARE):
        img = single_image(image, "I2VGen-XL Semantic Encode")
        size = int(getattr(clip_vision, "image_size", pre.CLIP_IMAGE_SIZE))
        pixels = pre.clip_image_input(img, square_size=int(square_size), size=size, quantize=True)
        out = clip_vision.encode_image(pixels)  # already size x size: ComfyUI only normalises
        embeds = out["image_embeds"]
        if embeds.ndim != 2 or embeds.shape[-1] != IMAGE_EMBED_DIM:
            raise ValueError(f"I2VGen-XL Semantic Encode: this CLIP vision model gives image embeddings of shape "
                             f"{tuple(embeds.shape)}, but I2VGen-XL needs the {IMAGE_EMBED_DIM}-d projected embedding "
                             f"of OpenCLIP ViT-H/14 (the hub's image_encoder, 'CLIP-ViT-H-14'). Load that in CLIP "
                             f"Vision Loader; to get it: {download_hint(files_for('clip_vision')[0])}.")
        return (out,)


def vae_encode_with_moments(vae, pixels: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's ``VAE.encode`` of `pixels` and the posterior moments (mean, log-variance) it computed on the way,
    read from its Gaussian regulariser's input, so the encode keeps ComfyUI's device, dtype and batching."""
    regularizer = getattr(getattr(vae, "first_stage_model", None), "regularization", None)
    if not isinstance(regularizer, torch.nn.Module):
        raise ValueError(f"{what}: posterior 'sample' needs the VAE's posterior, and this VAE "
                         f"({type(getattr(vae, 'first_stage_model', vae)).__name__}) has no Gaussian regulariser to "
                         f"read it from; use the SD2.1 VAE, or set posterior to 'mean'.")
    seen: list[torch.Tensor] = []
    handle = regularizer.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        latent = vae.encode(pixels)
    finally:
        handle.remove()
    if (len(seen) != 1 or seen[0].ndim != 4 or seen[0].shape[1] != 2 * latent.shape[1]
            or tuple(seen[0].shape[-2:]) != tuple(latent.shape[-2:])):
        raise ValueError(f"{what}: posterior 'sample' needs the VAE's posterior in one piece, but ComfyUI encoded "
                         f"the image in {len(seen)} part(s) (tiled, for lack of memory?); set posterior to 'mean' "
                         f"(the posterior's expectation; ComfyUI's own VAE Encode) or free memory.")
    return latent, seen[0]


class I2VGenXLDetailEncode:
    """VAE latent of the conditioning image (the UNet's image-latent branch)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "The SD2.1 VAE (the hub's vae folder file or the SD2.1 checkpoint's)."}),
                "image": ("IMAGE", {"tooltip": "The conditioning image (one image)."}),
                **_size_inputs(1280, 704),
            },
            "optional": {
                "posterior": (list(POSTERIORS), {
                    "default": "sample",
                    "tooltip": "sample: one draw from the VAE's posterior, as the original I2VGen-XL does "
                               "(mean + std * noise, from the seed below). mean: the posterior's mean, what "
                               "ComfyUI's VAE Encode returns. A trained SD2.1 VAE's posterior is narrow, so the two "
                               "differ little."}),
                "seed": ("INT", {"default": 8888, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Seed of the posterior draw (used with posterior 'sample'); 8888 is "
                                            "the original's seed."}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Raw VAE latent [1, 4, height/8, width/8] of the box-resized, centre-cropped image.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY_CONDITIONING
    DESCRIPTION = ("Box-filter resizes the image to cover width x height, centre-crops it (the original "
                   "CenterCropWide) and VAE-encodes it. Connect to I2VGen-XL Conditioning as image_latent; width "
                   "and height must equal the video size. Like the original it takes one draw from the VAE's "
                   "posterior (seeded here); posterior 'mean' gives what ComfyUI's VAE Encode gives.")

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None, posterior=None):
        return (posterior is not None and posterior_error(posterior)) or pixel_size_error(width, height) or True

    def encode(self, vae, image, width: int, height: int, posterior: str = "sample", seed: int = 8888):
        what = "I2VGen-XL Detail Encode"
        check_pixel_size(what, width, height)
        check_posterior(posterior)
        img = single_image(image, what)
        pixels = pre.cover_resize_box(img, int(width), int(height), quantize=True)
        if posterior == "sample":
            latent, moments = vae_encode_with_moments(vae, pixels, what)
        else:
            latent = vae.encode(pixels)
        if latent.ndim != 4 or latent.shape[1] != 4:
            raise ValueError(f"{what}: the VAE returned a latent of shape {tuple(latent.shape)}; "
                             f"I2VGen-XL needs the 4-channel SD2.1 image VAE; to get it: "
                             f"{download_hint(files_for('vae')[0])}")
        if posterior == "sample":
            latent = posterior_sample(moments, seed)
        return ({"samples": latent.to(intermediate_device())},)


def _zero_conditioning() -> list:
    return [[torch.zeros(1, TEXT_TOKENS, TEXT_DIM), {"pooled_output": torch.zeros(1, TEXT_DIM)}]]


def _set_values(conditioning: list, values: dict) -> list:
    """node_helpers.conditioning_set_values, with a local fallback outside ComfyUI."""
    try:
        import node_helpers
        return node_helpers.conditioning_set_values(conditioning, values)
    except ImportError:
        return [[t[0], {**t[1], **values}] for t in conditioning]


class I2VGenXLConditioning:
    """Attaches image embedding, image latent and fps to the text conditioning; makes the empty video latent."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_size_inputs(1280, 704, " Ignored when image_latent is connected: the video then takes the image "
                                          "latent's size (set it once, on I2VGen-XL Detail Encode)."),
                "length": ("INT", {"default": 16, "min": 1, "max": 1024, "step": 1,
                                   "tooltip": "Number of frames (16 for I2VGen-XL, 32 for MS-Image2Video)."}),
                "fps": ("INT", {"default": 16, "min": 1, "max": 120, "step": 1,
                                "tooltip": "Frame-rate condition (motion speed), not the file's fps: 16 for "
                                           "I2VGen-XL, 8 for MS-Image2Video. Ignored by MS-Vid2Vid-XL."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64,
                                       "tooltip": "Videos generated at once from the same conditioning."}),
            },
            "optional": {
                "positive": ("CONDITIONING", {"tooltip": "Text prompt (CLIP Text Encode with the SD2 / OpenCLIP-H "
                                                         "text encoder). Leave empty for MS-Image2Video."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt. Empty: a zero text embedding."}),
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "From I2VGen-XL Semantic Encode. The "
                                                                         "negative side gets a zero embedding, as "
                                                                         "in the original."}),
                "image_latent": ("LATENT", {"tooltip": "From I2VGen-XL Detail Encode (same width/height). Needed by "
                                                       "I2VGen-XL; MS-Image2Video does not use it."}),
            },
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    OUTPUT_TOOLTIPS = ("Positive conditioning with the image conditions attached.",
                       "Negative conditioning (zero image embedding, same image latent).",
                       "Empty video latent [batch, 4, length, height/8, width/8] to sample into.")
    FUNCTION = "condition"
    CATEGORY = CATEGORY_CONDITIONING
    DESCRIPTION = ("Combines text, CLIP image embedding, image latent and fps into I2VGen-XL conditioning for "
                   "the I2VGen-XL sampler (or KSampler) and creates the empty video latent. One size per stage: "
                   "when image_latent is connected the video takes its size (width/height here are ignored), so "
                   "the image latent and the video always match; without it (MS-Image2Video) width/height set it.")

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None):
        return pixel_size_error(width, height) or True

    def condition(self, width: int, height: int, length: int, fps: int, batch_size: int, positive=None,
                  negative=None, clip_vision_output=None, image_latent=None):
        width, height = size_from_image_latent(image_latent, width, height)
        check_pixel_size("I2VGen-XL Conditioning", width, height)
        if length < 1:
            raise ValueError("I2VGen-XL Conditioning: length must be at least 1 frame")
        h, w = height // VAE_SCALE, width // VAE_SCALE
        estimate = conditioning_estimate(  # refuses a run that cannot fit before the latent is allocated
            width=width, height=height, length=length, batch=batch_size, has_image_latent=image_latent is not None,
            has_clip_vision=clip_vision_output is not None)
        pos_values: dict = {COND_FPS: int(fps)}
        neg_values: dict = {COND_FPS: int(fps)}
        if clip_vision_output is not None:
            emb = clip_vision_output["image_embeds"]
            if emb.ndim == 3:
                emb = emb[:, 0]
            if emb.ndim != 2 or emb.shape[-1] != IMAGE_EMBED_DIM:
                raise ValueError(f"I2VGen-XL Conditioning: clip_vision_output has image_embeds of shape "
                                 f"{tuple(emb.shape)}; expected [1, {IMAGE_EMBED_DIM}] from OpenCLIP ViT-H/14 (use "
                                 f"I2VGen-XL Semantic Encode with the ViT-H image encoder)")
            emb = emb[:1].float().cpu()
            pos_values[COND_IMAGE_EMBEDDING] = emb
            neg_values[COND_IMAGE_EMBEDDING] = torch.zeros_like(emb)
        if image_latent is not None:
            lat = image_latent_frame(image_latent["samples"])
            if lat.ndim != 4 or lat.shape[1] != 4:
                raise ValueError(f"I2VGen-XL Conditioning: image_latent has shape {tuple(lat.shape)}; expected the "
                                 f"[1, 4, h, w] output of I2VGen-XL Detail Encode")
            lat = lat[:1].float().cpu()
            pos_values[COND_IMAGE_LATENT] = lat
            neg_values[COND_IMAGE_LATENT] = lat
        positive = _set_values(positive if positive is not None else _zero_conditioning(), pos_values)
        negative = _set_values(negative if negative is not None else _zero_conditioning(), neg_values)
        latent = torch.zeros(batch_size, 4, length, h, w, device=intermediate_device())
        return {"ui": {"text": estimate}, "result": (positive, negative, {"samples": latent})}


class I2VGenXLVideoEncode:
    """VAE-encodes video frames (to refine an existing video with MS-Vid2Vid-XL)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "The SD2.1 VAE."}),
                "images": ("IMAGE", {"tooltip": "The video frames (e.g. from Get Video Components)."}),
                **_size_inputs(1280, 720),
            },
            "optional": {
                "crop": (["disabled", "center"], {"default": "disabled",
                                                  "tooltip": "disabled: stretch to width x height like the "
                                                             "original refiner; center: crop to the aspect ratio "
                                                             "first."}),
                "frames_per_batch": ("INT", {"default": 4, "min": 1, "max": 256,
                                             "tooltip": "Frames encoded at once (lower = less memory)."}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Video latent [1, 4, frames, height/8, width/8].",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY_CONDITIONING
    DESCRIPTION = ("Bilinear-resizes the frames to width x height in pixel space (as MS-Vid2Vid-XL's pipeline) "
                   "and VAE-encodes them a few frames at a time. Feed the result to I2VGen-XL Refine Sampler. "
                   "For MS-Vid2Vid-XL use 1280x720 (height must give a latent height = 2 mod 8).")

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None):
        return pixel_size_error(width, height) or True

    def encode(self, vae, images, width: int, height: int, crop: str = "disabled", frames_per_batch: int = 4):
        check_pixel_size("I2VGen-XL Video Encode", width, height)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 1:
            raise ValueError("I2VGen-XL Video Encode: expected IMAGE frames [frames, height, width, channels]")
        frames = images[..., :3]
        progress = Progress(-(-frames.shape[0] // max(1, frames_per_batch)))
        latent = encode_frames(vae, frames, width, height, frames_per_batch, progress, crop=(crop == "center"))
        return ({"samples": latent.movedim(0, 1).unsqueeze(0).contiguous()},)


NODE_CLASS_MAPPINGS = {
    "I2VGenXLTextEncode": I2VGenXLTextEncode,
    "I2VGenXLSemanticEncode": I2VGenXLSemanticEncode,
    "I2VGenXLDetailEncode": I2VGenXLDetailEncode,
    "I2VGenXLConditioning": I2VGenXLConditioning,
    "I2VGenXLVideoEncode": I2VGenXLVideoEncode,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "I2VGenXLTextEncode": "I2VGen-XL Text Encode (original tokens)",
    "I2VGenXLSemanticEncode": "I2VGen-XL Semantic Encode (CLIP image)",
    "I2VGenXLDetailEncode": "I2VGen-XL Detail Encode (VAE image)",
    "I2VGenXLConditioning": "I2VGen-XL Conditioning",
    "I2VGenXLVideoEncode": "I2VGen-XL Video Encode",
}

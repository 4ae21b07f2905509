"""The I2VGen-XL UNet as a native ComfyUI model: BaseModel subclass, model sampling, latent format, extra conds.

How the pieces map onto ComfyUI:

* ``I2VGenXLModel`` (a ``comfy.model_base.BaseModel``) holds the core ``I2VGenUNet`` directly as its
  ``diffusion_model``. The network is re-classed to ``ComfyI2VGenUNet``, a subclass whose ``forward`` takes ComfyUI's
  call signature, so state-dict keys stay ``diffusion_model.<core parameter names>`` (LoRA / weight patches and the
  memory manager see the real parameters). Its Linear/Conv/Norm layers are ``comfy.ops`` layers (the loader builds
  the network from them; ``adopt_comfy_ops`` converts networks built elsewhere): weight casting for fp8 storage,
  low-VRAM partial loading and on-the-fly LoRA work exactly as for ComfyUI's own models.
* ``I2VGenModelSampling``: ComfyUI's discrete v-prediction sampling built from the variant's ``alphas_cumprod``
  (``i2vgen_core.schedules``). Zero-terminal-SNR schedules end in ``alphas_cumprod = 0`` (infinite sigma); like
  ComfyUI's own ``zsnr`` option the last entry is clamped to 4.8973451890853435e-08 (sigma ~ 4519), so every sigma
  is finite and the last timestep is still "pure noise" for the network.
* ``I2VGenLatentFormat``: SD1.x/2.x KL-f8 latents (scale 0.18215, 4 channels) with 3 latent dimensions
  ([B, 4, F, h, w]) and SD1.5's latent->RGB factors for previews.
* ``extra_conds`` turns the conditioning keys set by ``I2VGenXLConditioning`` (``i2vgen_image_embedding``,
  ``i2vgen_image_latent``, ``i2vgen_fps``) into ``comfy.conds`` objects, so ComfyUI batches cond and uncond together.
"""

from __future__ import annotations

import logging

import torch

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_sampling
import comfy.ops
import comfy.supported_models_base

from ..i2vgen_core import schedules
from ..i2vgen_core.unet import I2VGenUNet, check_latent_size
from .common import COND_FPS, COND_IMAGE_EMBEDDING, COND_IMAGE_LATENT, TEXT_TOKENS

#: The value ComfyUI's ``rescale_zero_terminal_snr_sigmas`` gives the last ``alphas_cumprod`` of a zero-SNR schedule.
ZSNR_LAST_ALPHAS_CUMPROD = 4.8973451890853435e-08


VARIANT_NAMES = {
    "i2vgen_xl": "I2VGen-XL",
    "ms_image2video": "MS-Image2Video",
    "ms_vid2vid_xl": "MS-Vid2Vid-XL",
}

#: sampling_settings that make ComfyUI's generic ModelSamplingDiscrete (e.g. the "ModelSamplingDiscrete" node)
#: rebuild the same schedule where ComfyUI has an equivalent; MS-Vid2Vid-XL's logSNR schedule has none.
_COMFY_SAMPLING_SETTINGS = {
    "i2vgen_xl": {"beta_schedule": "cosine", "zsnr": True},
    "ms_image2video": {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012},
    "ms_vid2vid_xl": {},
}


class I2VGenLatentFormat(comfy.latent_formats.SD15):
    """SD KL-f8 latents (x 0.18215) laid out as video: [batch, 4, frames, height/8, width/8]."""

    latent_channels = 4
    latent_dimensions = 3

    def __init__(self):
        super().__init__(scale_factor=0.18215)
        # TAESD previews decode 4-D latents only; the latent->RGB previewer handles the 5-D layout (first frame).
        self.taesd_decoder_name = None


class I2VGenModelSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
    """Discrete v-prediction sampling over the 1000 training timesteps of one variant's schedule."""

    def __init__(self, variant: str):
        torch.nn.Module.__init__(self)
        self.schedule = schedules.schedule_for_variant(variant)
        abar = schedules.alphas_cumprod(self.schedule).to(torch.float64).clone()
        self.zsnr = bool(abar[-1] <= 0.0)
        if self.zsnr:
            abar[-1] = ZSNR_LAST_ALPHAS_CUMPROD
        self.num_timesteps = int(abar.shape[0])
        self.linear_start = None
        self.linear_end = None
        self.sigma_data = 1.0
        self.set_sigmas(((1.0 - abar) / abar).sqrt())


class ComfyI2VGenUNet(I2VGenUNet):
    """The core UNet with ComfyUI's ``diffusion_model(x, timesteps, context=..., **conds)`` calling convention.

    ``compute_dtype`` (core attribute, set when weights are stored in a dtype the device cannot compute in, e.g.
    fp8) is the dtype activations run in; ComfyUI's ops layers cast each weight to it on the fly.
    """

    @property
    def weight_dtype(self) -> torch.dtype:
        """Dtype the weights are stored in."""
        return self.out[2].weight.dtype

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                control=None, transformer_options=None, image_embedding: torch.Tensor | None = None,
                image_latent: torch.Tensor | None = None, fps: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        """Map ComfyUI's call onto ``I2VGenUNet.forward`` (text only for variants that use it)."""
        if control is not None:
            raise ValueError("ControlNet is not supported by I2VGen-XL models; remove the ControlNet from the "
                             "conditioning.")
        c = self.config
        return super().forward(
            x, timesteps,
            text=context if c.use_text else None,
            image_embedding=image_embedding if c.use_image_embedding else None,
            image_latent=image_latent if c.use_image_latent else None,
            fps=fps if c.use_fps else None,
        )


_OPS_LAYERS = (
    (torch.nn.Linear, "Linear"),
    (torch.nn.Conv1d, "Conv1d"),
    (torch.nn.Conv2d, "Conv2d"),
    (torch.nn.Conv3d, "Conv3d"),
    (torch.nn.GroupNorm, "GroupNorm"),
    (torch.nn.LayerNorm, "LayerNorm"),
)


def adopt_comfy_ops(module: torch.nn.Module, operations) -> int:
    """Re-class plain torch layers of `module` to the matching ``comfy.ops`` layer classes; returns how many.

    The loader builds the network from ``comfy.ops`` classes directly (nothing to do then); this covers networks
    built elsewhere with plain torch layers (e.g. handed over in memory).
    """
    count = 0
    for m in module.modules():
        for base, name in _OPS_LAYERS:
            if type(m) is base:
                m.__class__ = getattr(operations, name)
                count += 1
                break
    return count


def make_model_config(variant: str) -> comfy.supported_models_base.BASE:
    """A ``supported_models_base.BASE`` describing an I2VGen-family UNet that ComfyUI must not build itself."""

    class I2VGenXLConfig(comfy.supported_models_base.BASE):
        unet_config = {"disable_unet_model_creation": True}
        unet_extra_config = {}
        sampling_settings = dict(_COMFY_SAMPLING_SETTINGS.get(variant, {}))
        latent_format = I2VGenLatentFormat
        # the SD2.1-layout spatio-temporal UNet is closest to SVD, which uses BASE's 2.0
        memory_usage_factor = 2.0
        supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]

    return I2VGenXLConfig({"disable_unet_model_creation": True, "i2vgen_variant": variant})


def conditioning_problem(config, name: str, which: str, text: torch.Tensor | None, values: dict,
                         latent_hw: tuple[int, int]) -> str | None:
    """What is missing or wrong in one conditioning entry for a network (None when it fits).

    `text` is the entry's text tensor, `values` its dict (the keys I2VGenXLConditioning sets), `latent_hw` the
    sampled latent's height and width. Shared by ``extra_conds`` (any sampler) and the I2VGen-XL sampler nodes.
    """
    if config.use_text and (text is None or text.ndim != 3 or text.shape[-1] != config.context_dim):
        width = "missing" if text is None else f"{text.shape[-1]}-wide"
        return (f"The {which} text conditioning is {width} but {name} needs {config.context_dim}-wide OpenCLIP "
                f"ViT-H/14 text embeddings: encode the prompt with the SD2.x text encoder (CLIPLoader type "
                f"'stable_diffusion' with the I2VGen-XL text_encoder).")
    if config.use_image_embedding:
        emb = values.get(COND_IMAGE_EMBEDDING)
        if emb is None:
            return (f"The {which} conditioning has no CLIP image embedding, which {name} needs: pass positive and "
                    f"negative through I2VGenXLConditioning (with clip_vision_output connected) before the sampler.")
        if emb.reshape(emb.shape[0], -1).shape[-1] != config.image_embedding_dim:
            return (f"The {which} CLIP image embedding has shape {list(emb.shape)}; {name} needs "
                    f"[1, {config.image_embedding_dim}] (the projected OpenCLIP ViT-H/14 image embedding).")
    if config.use_image_latent:
        lat = values.get(COND_IMAGE_LATENT)
        if lat is None:
            return (f"The {which} conditioning has no image latent, which {name} needs: connect "
                    f"I2VGenXLDetailEncode to I2VGenXLConditioning's image_latent input.")
        if lat.ndim == 5 and lat.shape[2] == 1:
            lat = lat[:, :, 0]
        if lat.ndim != 4 or lat.shape[1] != config.in_channels:
            return (f"The {which} image latent has shape {list(lat.shape)}; {name} needs "
                    f"[1, {config.in_channels}, height/8, width/8] from I2VGenXLDetailEncode.")
        h, w = latent_hw
        if tuple(lat.shape[-2:]) != (h, w):
            return (f"The conditioning image latent is {lat.shape[-1] * 8}x{lat.shape[-2] * 8} but the video latent "
                    f"is {w * 8}x{h * 8}: give I2VGenXLDetailEncode and I2VGenXLConditioning the same width and "
                    f"height.")
    return None


def first_text_chunk(text: torch.Tensor) -> torch.Tensor:
    """The first 77 tokens of a text conditioning: what the original (open_clip, truncating at 77) encodes.

    ComfyUI encodes a prompt past 75 tokens as 77-token chunks placed one after the other; its first chunk equals
    open_clip's truncated prompt token for token. The models were trained on 77 tokens only, and ComfyUI would tile
    a shorter negative to the positive's length when batching them, which shifts the weight between text and image
    context tokens; so only the first chunk is used.
    """
    if text.ndim == 3 and text.shape[1] > TEXT_TOKENS:
        logging.info("I2VGen-XL: the prompt is longer than 77 tokens; the first 77 are used, as in the original")
        return text[:, :TEXT_TOKENS]
    return text


class I2VGenXLModel(comfy.model_base.BaseModel):
    """ComfyUI BaseModel around an ``I2VGenUNet``; ``i2vgen_variant`` tells nodes which family member it is."""

    def __init__(self, unet: I2VGenUNet, weight_dtype: torch.dtype | None = None,
                 manual_cast_dtype: torch.dtype | None = None, device=None):
        variant = unet.variant
        storage = weight_dtype or unet.out[2].weight.dtype
        model_config = make_model_config(variant)
        model_config.set_inference_dtype(storage, manual_cast_dtype)
        super().__init__(model_config, comfy.model_base.ModelType.V_PREDICTION, device=device)
        operations = comfy.ops.pick_operations(storage, manual_cast_dtype,
                                               load_device=comfy.model_management.get_torch_device())
        adopt_comfy_ops(unet, operations)
        unet.__class__ = ComfyI2VGenUNet  # same object and parameters, ComfyUI's calling convention
        unet.compute_dtype = manual_cast_dtype
        self.diffusion_model = unet
        self.model_sampling = I2VGenModelSampling(variant)
        self.i2vgen_variant = variant

    def get_dtype(self) -> torch.dtype:
        """Weight (storage) dtype, as ComfyUI expects; the compute dtype is ``manual_cast_dtype`` when set."""
        return self.diffusion_model.weight_dtype

    # ------------------------------------------------------------------ conditioning
    def extra_conds(self, **kwargs) -> dict:
        """Per-conditioning inputs of the network as ``comfy.conds`` objects (batched for cond/uncond by ComfyUI)."""
        cfg = self.diffusion_model.config
        name = VARIANT_NAMES.get(self.i2vgen_variant, self.i2vgen_variant)
        noise = kwargs["noise"]
        if noise.ndim != 5:
            raise ValueError(f"{name} samples video latents [batch, 4, frames, height/8, width/8]; got a latent of "
                             f"shape {list(noise.shape)}. Use the LATENT from I2VGenXLConditioning.")
        h, w = noise.shape[-2:]
        check_latent_size(cfg, h, w)
        text = kwargs.get("cross_attn", None)
        problem = conditioning_problem(cfg, name, kwargs.get("prompt_type", "conditioning"), text, kwargs, (h, w))
        if problem:
            raise ValueError(problem)

        out = {}
        if cfg.use_text:
            out["c_crossattn"] = comfy.conds.CONDCrossAttn(first_text_chunk(text))
        if cfg.use_image_embedding:
            emb = kwargs[COND_IMAGE_EMBEDDING]
            out["image_embedding"] = comfy.conds.CONDRegular(emb.reshape(emb.shape[0], -1))
        if cfg.use_image_latent:
            lat = kwargs[COND_IMAGE_LATENT]
            lat = lat[:, :, 0] if lat.ndim == 5 else lat
            out["image_latent"] = comfy.conds.CONDRegular(self.process_latent_in(lat))
        if cfg.use_fps:
            fps = kwargs.get(COND_FPS, None)
            fps = cfg.default_fps if fps is None else fps
            out["fps"] = comfy.conds.CONDRegular(torch.as_tensor(fps).reshape(-1).to(torch.long))
        return out

    def extra_conds_shapes(self, **kwargs) -> dict:
        """No conds add to the activation size (the image latent is per frame-0 only)."""
        return {}

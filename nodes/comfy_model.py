"""The I2VGen-XL UNet as a native ComfyUI model: BaseModel subclass, model sampling, latent format, extra conds.

How the pieces map onto ComfyUI:

* ``I2VGenXLModel`` (a ``comfy.model_base.BaseModel``) holds the core ``I2VGenUNet`` directly as its
  ``diffusion_model``. The network is re-classed to ``ComfyI2VGenUNet``, a subclass whose ``forward`` takes ComfyUI's
  call signature, so state-dict keys stay ``diffusion_model.<core parameter names>`` (LoRA / weight patches and the
  memory manager see the real parameters). Its Linear/Conv/Norm layers are ``comfy.ops`` layers (the loader builds
  the network from them): weight casting for fp8 storage, low-VRAM partial loading and on-the-fly LoRA work exactly
  as for ComfyUI's own models.
* ``I2VGenModelSampling``: ComfyUI's discrete v-prediction sampling built from the variant's ``alphas_cumprod``
  (``i2vgen_core.diffusion.schedules``). Zero-terminal-SNR schedules end in ``alphas_cumprod = 0`` (infinite sigma); like
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

from ..i2vgen_core import load_unet

from ..i2vgen_core.diffusion import schedules
from ..i2vgen_core.config import VAE_LATENT_SCALE, VARIANT_NAMES
from ..i2vgen_core.video.frames import image_latent_frame
from ..i2vgen_core.network.hooks import ForwardHooks
from ..i2vgen_core.sizes import VAE_SCALE, check_latent_size
from ..i2vgen_core.network.unet import I2VGenUNet
from .common import COND_FPS, COND_IMAGE_EMBEDDING, COND_IMAGE_LATENT, TEXT_TOKENS

#: The value ComfyUI's ``rescale_zero_terminal_snr_sigmas`` gives the last ``alphas_cumprod`` of a zero-SNR schedule.
ZSNR_LAST_ALPHAS_CUMPROD = 4.8973451890853435e-08

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
        super().__init__(scale_factor=VAE_LATENT_SCALE)
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


#: Attention functions ComfyUI falls back to when it has no accelerated choice for a device (e.g. ``--cpu``).
_FALLBACK_ATTENTION = ("attention_sub_quad", "attention_split", "attention_basic")

#: Patch functions of stock ComfyUI nodes that cannot work on video latents: their function name -> why.
_INCOMPATIBLE_PATCHES = {
    "attn_and_record": "SelfAttentionGuidance (its blur map unpacks 4-D image latents [b, c, h, w]; I2VGen-XL "
                       "latents are 5-D video [b, c, frames, h, w])",
}


def comfy_attention_function():
    """The attention function ComfyUI selected (``--use-sage-attention``, xformers, ``--use-flash-attention``,
    PyTorch, or the split/sub-quadratic ones when asked for). Where ComfyUI only falls back to its generic
    sub-quadratic attention because nothing faster is enabled for the device (``--cpu``), its PyTorch SDPA function
    is used: the network's own default, so results do not change with the device flag."""
    import comfy.ldm.modules.attention as attention_module
    from comfy.cli_args import args

    fn = attention_module.optimized_attention
    asked = getattr(args, "use_split_cross_attention", False) or getattr(args, "use_quad_cross_attention", False)
    if getattr(fn, "__name__", "") in _FALLBACK_ATTENTION and not asked:
        fn = attention_module.attention_pytorch
    return fn


class ComfyHooks(ForwardHooks):
    """The core's hook points bound to ComfyUI's ``transformer_options`` (as ``openaimodel.UNetModel`` keeps them).

    Block patches: ``emb_patch``, ``input_block_patch``, ``input_block_patch_after_skip``, ``middle_block_patch``,
    ``output_block_patch``. Attention (spatial transformers, like ComfyUI's own UNets): ``attn1_patch``,
    ``attn1_output_patch``, ``middle_patch``, ``attn2_patch``, ``attn2_output_patch`` and ``patches_replace``
    ``attn1`` / ``attn2`` keyed by ``(block, id, block_index)`` or ``(block, id)``. The temporal attention (frames of
    each pixel) takes the pack's own keys ``i2vgen_temporal_attn_patch``, ``i2vgen_temporal_attn_output_patch`` and
    ``patches_replace["i2vgen_temporal_attn"]`` (ComfyUI's patches are written for spatial attention). Attention
    runs through ComfyUI's selected function with ``transformer_options`` (so ``optimized_attention_override``
    applies) unless the model was loaded with an explicit backend.
    """

    def __init__(self, transformer_options: dict, model_channels: int, attention_fn=None):
        to = transformer_options
        patches = to.get("patches", {}) or {}
        replace = to.get("patches_replace", {}) or {}
        self.transformer_options = to
        self._replace = {"self": replace.get("attn1", {}), "cross": replace.get("attn2", {}),
                         "temporal": replace.get("i2vgen_temporal_attn", {})}

        def blocks(name):
            return [lambda h, hooks, p=p: p(h, to) for p in patches.get(name, ())]

        def attn_in(name):
            return [lambda x, ctx, value, call, p=p: p(x, ctx, value, self.extra_options(call))
                    for p in patches.get(name, ())]

        def attn_out(name):
            return [lambda out, call, p=p: p(out, self.extra_options(call)) for p in patches.get(name, ())]

        super().__init__(
            embedding=[lambda emb, hooks, p=p: p(emb, model_channels, to) for p in patches.get("emb_patch", ())],
            input_block=blocks("input_block_patch"),
            input_block_after_skip=blocks("input_block_patch_after_skip"),
            middle_block_after=blocks("middle_block_patch"),
            output_block=[lambda h, hsp, hooks, p=p: p(h, hsp, to) for p in patches.get("output_block_patch", ())],
            attn_patch={"self": attn_in("attn1_patch"), "cross": attn_in("attn2_patch"),
                        "temporal": attn_in("i2vgen_temporal_attn_patch")},
            attn_output_patch={"self": attn_out("attn1_output_patch"), "cross": attn_out("attn2_output_patch"),
                               "temporal": attn_out("i2vgen_temporal_attn_output_patch")},
            after_self_attention=[lambda x, hooks, p=p: p(x, self.extra_options(hooks.call("self", 0, 0)))
                                  for p in patches.get("middle_patch", ())],
            attn_replace=self._replacement if any(self._replace.values()) else None,
            attention=self._comfy_attention(attention_fn) if attention_fn is not None else None,
        )

    # -- ComfyUI's bookkeeping, kept in transformer_options where its patches read it
    def enter_block(self, name: str, index: int) -> None:
        super().enter_block(name, index)
        self.transformer_options["block"] = (name, index)

    def enter_transformer_block(self, index: int) -> None:
        super().enter_transformer_block(index)
        self.transformer_options["block_index"] = index

    def leave_spatial_transformer(self) -> None:
        super().leave_spatial_transformer()
        self.transformer_options["transformer_index"] = self.position.transformer_index

    def reset(self) -> None:
        super().reset()
        self.transformer_options["transformer_index"] = 0

    def extra_options(self, call) -> dict:
        """ComfyUI's ``extra_options`` of an attention patch: transformer_options without the patch tables, plus
        ``n_heads``, ``dim_head``, ``attn_precision`` (and ``i2vgen_attention`` = self / cross / temporal)."""
        extra = {k: v for k, v in self.transformer_options.items() if k not in ("patches", "patches_replace")}
        extra.update(n_heads=call.heads, dim_head=call.dim_head, attn_precision=None, i2vgen_attention=call.kind)
        return extra

    def _replacement(self, call):
        table = self._replace.get(call.kind)
        if not table or call.block is None:
            return None
        fn = table.get((call.block[0], call.block[1], call.block_index), table.get(call.block))
        if fn is None:
            return None
        return lambda q, k, v, heads, c: fn(q, k, v, self.extra_options(c))

    def _comfy_attention(self, fn):
        to = self.transformer_options
        return lambda q, k, v, heads, call: fn(q, k, v, heads, transformer_options=to)


class ComfyI2VGenUNet(I2VGenUNet):
    """The core UNet with ComfyUI's calling convention and extension protocol.

    ``forward(x, timesteps, context, control, transformer_options, **conds)`` runs through ComfyUI's wrapper executor
    (``WrappersMP.DIFFUSION_MODEL``: EasyCache and other wrappers see every call) and `ComfyHooks` bind
    ``transformer_options``' patches to the core's hook points. ``attention_mode`` is "comfy" (ComfyUI's selected
    attention function) or "core" (a backend the loader was asked for explicitly, set with set_attention_backend).
    ``compute_dtype`` (set when weights are stored in a dtype the device cannot compute in, e.g. fp8) is the dtype
    activations run in; ComfyUI's ops layers cast each weight to it on the fly.
    """

    attention_mode = "comfy"

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                control=None, transformer_options=None, **kwargs) -> torch.Tensor:
        """ComfyUI's diffusion-model call, through its ``DIFFUSION_MODEL`` wrappers."""
        import comfy.patcher_extension as pe

        transformer_options = {} if transformer_options is None else transformer_options
        wrappers = pe.get_all_wrappers(pe.WrappersMP.DIFFUSION_MODEL, transformer_options)
        executor = pe.WrapperExecutor.new_class_executor(self._forward, self, wrappers)
        return executor.execute(x, timesteps, context, control, transformer_options, **kwargs)

    def _forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                 control=None, transformer_options=None, image_embedding: torch.Tensor | None = None,
                 image_latent: torch.Tensor | None = None, fps: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        """Map ComfyUI's call onto ``I2VGenUNet.forward`` (text only for variants that use it)."""
        if control is not None:
            raise ValueError("ControlNet is not supported by I2VGen-XL models; remove the ControlNet from the "
                             "conditioning.")
        c = self.config
        to = transformer_options if transformer_options is not None else {}
        check_patches(to)
        b, _, frames, h, w = x.shape
        # ComfyUI's video UNet (SVD) folds frames into the batch: patches that read original_shape (ToMe,
        # HyperTile) see the per-frame shape they expect; the video shape is kept beside it
        to["original_shape"] = [b * frames, x.shape[1], h, w]
        to["i2vgen_video_shape"] = list(x.shape)
        attention_fn = comfy_attention_function() if self.attention_mode == "comfy" else None
        hooks = ComfyHooks(to, c.model_channels, attention_fn)
        window = to.get("context_window")
        anchor = window is None or list(getattr(window, "index_list", [0]))[:1] == [0]
        if fps is None and c.use_fps:
            fps = c.default_fps
        # inputs were checked once per run by I2VGenXLModel.extra_conds: the network runs without re-checking
        return self._predict(
            x, timesteps,
            text=context if c.use_text else None,
            image_embedding=image_embedding if c.use_image_embedding else None,
            image_latent=image_latent if c.use_image_latent else None,
            fps=fps if c.use_fps else None,
            hooks=hooks, image_anchor=anchor,
        )

    def set_attention_backend(self, name: str, device=None) -> str:
        """"auto" = ComfyUI's attention selection (its flags and overrides apply); a named backend = that core
        backend for every attention, bypassing ComfyUI's selection."""
        self.attention_mode = "comfy" if name == "auto" else "core"
        return "comfy" if name == "auto" else super().set_attention_backend(name, device)


def check_patches(transformer_options: dict) -> None:
    """Refuse, with a sentence, patches of stock nodes that cannot work on video latents (never ignore them)."""
    replace = transformer_options.get("patches_replace", {}) or {}
    for table in replace.values():
        for fn in table.values():
            why = _INCOMPATIBLE_PATCHES.get(getattr(fn, "__name__", ""))
            if why:
                raise ValueError(f"{why} cannot be applied to an I2VGen-XL model; remove that node from the "
                                 f"graph (or bypass it) and queue again.")


class I2VGenXLConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config of the I2VGen-XL family; ``unet_config`` describes the network (ComfyUI must not build
    it: the loader does, from ComfyUI's layer classes)."""

    unet_config = {"disable_unet_model_creation": True}
    unet_extra_config = {}
    latent_format = I2VGenLatentFormat
    # the SD2.1-layout spatio-temporal UNet is closest to SVD, which uses BASE's 2.0
    memory_usage_factor = 2.0
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]

    def __init__(self, config):
        super().__init__(describe_unet(config))
        self.sampling_settings = dict(_COMFY_SAMPLING_SETTINGS.get(config.variant, {}))


def describe_unet(config) -> dict:
    """The ``unet_config`` ComfyUI patches read (FreeU's ``model_channels``, ...), from the core config."""
    mc = config.model_channels
    channels = list(config.block_channels)
    out = {
        "disable_unet_model_creation": True,
        "i2vgen_variant": config.variant,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "model_channels": mc,
        "block_channels": channels,
        # SD-UNet-style description (per-level res blocks, per-block transformer depths), so ComfyUI's own helpers
        # (comfy.utils.unet_to_diffusers for diffusers-named LoRA keys) read it as they read SD's
        "num_res_blocks": [config.num_res_blocks] * len(channels),
        "transformer_depth": [int(a) for a in config.attention_levels for _ in range(config.num_res_blocks)],
        "transformer_depth_output": [int(a) for a in reversed(config.attention_levels)
                                     for _ in range(config.num_res_blocks + 1)],
        "transformer_depth_middle": 1,
        "num_head_channels": config.head_dim,
        "context_dim": config.context_dim,
        "use_linear_in_transformer": True,
        "use_temporal_attention": True,
        "adm_in_channels": None,
    }
    if all(ch % mc == 0 for ch in channels):
        out["channel_mult"] = [ch // mc for ch in channels]
    return out


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
        lat = image_latent_frame(lat)
        if lat.ndim != 4 or lat.shape[1] != config.in_channels:
            return (f"The {which} image latent has shape {list(lat.shape)}; {name} needs "
                    f"[1, {config.in_channels}, height/8, width/8] from I2VGenXLDetailEncode.")
        h, w = latent_hw
        if tuple(lat.shape[-2:]) != (h, w):
            return (f"The conditioning image latent is {lat.shape[-1] * VAE_SCALE}x{lat.shape[-2] * VAE_SCALE} but "
                    f"the video latent is {w * VAE_SCALE}x{h * VAE_SCALE}: give I2VGenXLDetailEncode and "
                    f"I2VGenXLConditioning the same width and height.")
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


#: The conds `I2VGenXLModel.extra_conds` makes: none has a frame axis.
WHOLE_IN_EVERY_WINDOW = ("c_crossattn", "image_embedding", "image_latent", "fps")


class I2VGenXLModel(comfy.model_base.BaseModel):
    """ComfyUI BaseModel around a `ComfyI2VGenUNet`; ``i2vgen_variant`` tells nodes which family member it is."""

    def __init__(self, unet: ComfyI2VGenUNet, weight_dtype: torch.dtype | None = None,
                 manual_cast_dtype: torch.dtype | None = None, device=None):
        if not isinstance(unet, ComfyI2VGenUNet):
            raise TypeError("I2VGenXLModel takes the network built for ComfyUI (load_comfy_unet / "
                            "I2VGenXLModelLoader), not a plain core I2VGenUNet")
        model_config = I2VGenXLConfig(unet.config)
        model_config.set_inference_dtype(weight_dtype or unet.weight_dtype, manual_cast_dtype)
        super().__init__(model_config, comfy.model_base.ModelType.V_PREDICTION, device=device)
        unet.compute_dtype = manual_cast_dtype
        self.diffusion_model = unet
        self.model_sampling = I2VGenModelSampling(unet.variant)
        self.i2vgen_variant = unet.variant

    def resize_cond_for_context_window(self, cond_key, cond_value, window, x_in, device, retain_index_list=()):
        """Context windows, on cores that ask the model first (later than 0.3.64; 0.3.64 never calls this): none of
        the conds `extra_conds` makes has a frame axis, so every window sees them whole (the image anchors only the
        window that starts at frame 0: see ``ComfyI2VGenUNet._forward``). Those cores otherwise slice any cond whose
        size on the frame axis equals the frame count: the text's 1024 features at 1024 frames, the image latent's
        height when it equals the frame count."""
        if cond_key in WHOLE_IN_EVERY_WINDOW:
            return cond_value._copy_with(cond_value.cond.to(device))
        parent = getattr(super(), "resize_cond_for_context_window", None)
        return parent(cond_key, cond_value, window, x_in, device, retain_index_list) if parent else None

    def get_dtype(self) -> torch.dtype:
        """Weight (storage) dtype, as ComfyUI expects; the compute dtype is ``manual_cast_dtype`` when set."""
        return self.diffusion_model.weight_dtype


    # ------------------------------------------------------------------ conditioning
    def extra_conds(self, **kwargs) -> dict:
        """Per-conditioning inputs of the network as ``comfy.conds`` objects (batched for cond/uncond by ComfyUI).

        The one check of a run's latent size and conditioning on the ComfyUI path (any sampler: KSampler, the pack's
        samplers, SamplerCustomAdvanced); the network then runs each step without re-checking."""
        cfg = self.diffusion_model.config
        name = VARIANT_NAMES.get(self.i2vgen_variant, self.i2vgen_variant)
        noise = kwargs["noise"]
        if noise.ndim != 5:
            raise ValueError(f"{name} samples video latents [batch, 4, frames, height/8, width/8]; got a latent of "
                             f"shape {list(noise.shape)}. Use the LATENT from I2VGenXLConditioning.")
        h, w = noise.shape[-2:]
        try:
            check_latent_size(cfg, h, w)
        except ValueError as err:
            hint = (" Resize the video with I2VGenXLLatentUpscale (e.g. 1280x720) before refining."
                    if self.i2vgen_variant == "ms_vid2vid_xl" else "")
            raise ValueError(f"{str(err).rstrip('.')}.{hint}") from None
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
            lat = image_latent_frame(lat)
            out["image_latent"] = comfy.conds.CONDRegular(self.process_latent_in(lat))
        if cfg.use_fps:
            fps = kwargs.get(COND_FPS, None)
            fps = cfg.default_fps if fps is None else fps
            out["fps"] = comfy.conds.CONDRegular(torch.as_tensor(fps).reshape(-1).to(torch.long))
        return out

    def extra_conds_shapes(self, **kwargs) -> dict:
        """No conds add to the activation size (the image latent is per frame-0 only)."""
        return {}


def load_comfy_unet(source, *, dtype: torch.dtype | None, manual_cast_dtype: torch.dtype | None = None,
                    device=None, load_device=None, fp8_optimizations: bool = False, **options) -> ComfyI2VGenUNet:
    """Build the ComfyUI network in one go: ComfyUI's layer classes for the storage/compute dtypes (with its fp8
    matrix-multiply layers when `fp8_optimizations`), weights from any supported checkpoint (path or state dict)
    through the core loader (`options` go to `load_unet`)."""
    load_device = load_device if load_device is not None else comfy.model_management.get_torch_device()
    operations = comfy.ops.pick_operations(dtype, manual_cast_dtype, load_device=load_device,
                                           fp8_optimizations=fp8_optimizations)
    return load_unet(source, dtype=dtype, device=device, ops=operations, compute_dtype=manual_cast_dtype,
                     network=ComfyI2VGenUNet, **options)

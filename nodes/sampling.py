"""I2VGenXLSampler (base stage) and I2VGenXLRefineSampler (SDEdit refinement), built on ComfyUI's own samplers.

Both run ``comfy.sample`` with ComfyUI's sampler and scheduler lists, so latent previews, the progress bar,
interruption, model patches and memory management behave exactly as with KSampler. What they add is the cascade
knowledge: defaults from the papers, input checks with messages a user can act on, and for the refiner the SDEdit
start point and the original guidance rescale.

Scheduler notes:

* Base: ``ddim`` + ``ddim_uniform`` with 50 steps visits timesteps 981, 961, ..., 1 and then steps to a clean
  sample, i.e. DDIM with "leading" spacing and offset 1, eta 0, exactly as VGen / diffusers / ModelScope sampled
  (the last step goes to alpha_cumprod = 1 like diffusers; VGen used alpha_cumprod[0] = 0.99996 there).
* Start: the original loops start from plain noise at the first timestep for any step count. ComfyUI starts there
  only when the first sigma is its sigma_max; at t = 981 it starts from ``sqrt(1 - abar_t) noise`` (0.99961 noise
  at 50 steps, less with fewer steps). Both nodes here start where the original does (``_OriginalStart``);
  KSampler keeps ComfyUI's start.
* Refine: the chosen scheduler is spread over timesteps 0..t_start only (t_start = round(strength * 1000) - 1,
  599 for 0.6), so ``simple`` reproduces the original "trailing" discretisation that starts exactly at t_start.
  As in the original MS-Vid2Vid-XL sampler, DPM-Solver++(2M) SDE (and ComfyUI's dpm_2 / uni_pc family) discretise
  steps + 1 levels and drop the smallest non-zero one.
"""

from __future__ import annotations

import torch

import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..i2vgen_core.diffusion.samplers import (FINAL_STEPS, add_start_offset, end_at_first_timestep,
                                              sdedit_start_scale, start_offset_strength, strength_to_timestep)
from ..i2vgen_core.sizes import VAE_SCALE
from .common import video_latent
from .context_windows import windows_batch_problem, with_context_windows
from .memory_ui import check_run, model_settings
from .numerics import check_output

#: Samplers whose sigma list drops the penultimate level (ComfyUI's set plus the MS-Vid2Vid-XL solver).
DISCARD_PENULTIMATE = set(comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS) | {
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu"}


# ----------------------------------------------------------------------------------------------- validation
def model_variant(model) -> str:
    """The family member inside a MODEL, or a ValueError for MODELs that did not come from our loader."""
    variant = getattr(getattr(model, "model", None), "i2vgen_variant", None)
    if variant is None:
        raise ValueError("This sampler needs a MODEL from the I2VGen-XL Model Loader (I2VGenXLModelLoader); for "
                         "other models use ComfyUI's KSampler.")
    return variant


def checked_samples(model, variant: str, latent_image: dict, positive, negative) -> torch.Tensor:
    """The video latent's samples once it is a video latent and both conditionings are connected. Its size and the
    conditionings' content are checked once per run where every sampler passes, the model's ``extra_conds``."""
    samples = video_latent(latent_image)
    for which, conditioning in (("positive", positive), ("negative", negative)):
        if not isinstance(conditioning, list) or len(conditioning) == 0:
            raise ValueError(f"{which} is empty; connect a CONDITIONING.")
    return samples


# ----------------------------------------------------------------------------------------------- sampling
class _ScheduleUpTo:
    """A model-sampling view that ends at timestep ``t_max``, so ComfyUI's schedulers spread steps over 0..t_max."""

    def __init__(self, model_sampling, t_max: int):
        self._full = model_sampling
        self.sigmas = model_sampling.sigmas[: t_max + 1]
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return self._full.timestep(sigma)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return self._full.sigma(timestep)

    def percent_to_sigma(self, percent: float) -> float:
        return self._full.percent_to_sigma(percent)


class _OriginalStart(comfy.samplers.KSAMPLER):
    """ComfyUI's sampler `name`, started where the original sampling loops started rather than where ComfyUI does.

    From noise (``sdedit_scale`` None), the start is plain noise at the first sigma (VP ``x = noise``) as in VGen's
    and ModelScope's DDIM loops: ComfyUI scales the noise by ``sqrt(1 + sigma^2)`` only when the first sigma is its
    sigma_max and by ``sigma`` otherwise. For SDEdit, ComfyUI's start ``latent + sigma noise`` is multiplied by
    ``sdedit_scale`` (MS-Vid2Vid-XL's start, :func:`i2vgen_core.diffusion.samplers.sdedit_start_scale`).
    """

    def __init__(self, name: str, sdedit_scale: float | None = None):
        sampler = comfy.samplers.sampler_object(name)
        super().__init__(self._scaled(sampler.sampler_function, sdedit_scale), sampler.extra_options,
                         sampler.inpaint_options)
        self.from_noise = sdedit_scale is None

    @staticmethod
    def _scaled(function, scale: float | None):
        if scale is None:
            return function

        def start_scaled(model, x, sigmas, *args, **kwargs):
            return function(model, x * scale, sigmas, *args, **kwargs)

        return start_scaled

    def max_denoise(self, model_wrap, sigmas) -> bool:
        return True if self.from_noise else super().max_denoise(model_wrap, sigmas)


def base_sigmas(model, scheduler: str, steps: int, sampler_name: str) -> torch.Tensor:
    """The sigmas KSampler would use for these settings (ComfyUI's own computation, full denoise)."""
    return comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                   scheduler=scheduler, denoise=1.0, model_options=model.model_options).sigmas


def refine_sigmas(model, scheduler: str, steps: int, strength: float, sampler_name: str) -> torch.Tensor:
    """Descending sigmas from the SDEdit start (t = round(strength * 1000) - 1) down to 0."""
    model_sampling = model.get_model_object("model_sampling")
    t_start = min(strength_to_timestep(strength, len(model_sampling.sigmas)), len(model_sampling.sigmas) - 1)
    discard = sampler_name in DISCARD_PENULTIMATE
    sigmas = comfy.samplers.calculate_sigmas(_ScheduleUpTo(model_sampling, t_start), scheduler,
                                             steps + (1 if discard else 0)).float()
    if discard and len(sigmas) > 2:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def velocity_from_denoised(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Invert ComfyUI's v-prediction ``denoised = x / (s^2 + 1) - v s / sqrt(s^2 + 1)`` (x is the VE sample)."""
    k = sigma * sigma + 1.0
    return (x / k - denoised) * k.sqrt() / sigma


def guidance_rescale_post_cfg(rescale: float):
    """Post-CFG function: scale the guided v-prediction towards the std of the conditional one (MS-Vid2Vid-XL).

    Original formula on the model output: ``out = u + s (c - u); out *= r std(c) / std(out) + (1 - r)``, std over
    every non-batch dimension. ComfyUI hands us denoised samples; v is recovered exactly and converted back.
    """

    def post_cfg(args: dict) -> torch.Tensor:
        denoised = args["denoised"]
        cond_denoised = args.get("cond_denoised")
        if args.get("uncond_denoised") is None or cond_denoised is None:
            return denoised
        x = args["input"]
        sigma = args["sigma"].to(x.dtype)
        sigma = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1))
        v_out = velocity_from_denoised(x, sigma, denoised).float()
        v_cond = velocity_from_denoised(x, sigma, cond_denoised).float()
        ratio = v_cond.flatten(1).std(dim=1) / (v_out.flatten(1).std(dim=1) + 1e-12)
        v_out = v_out * (rescale * ratio.view((-1,) + (1,) * (x.ndim - 1)) + (1.0 - rescale))
        k = sigma * sigma + 1.0
        return (x / k - v_out.to(x.dtype) * sigma / k.sqrt()).to(denoised.dtype)

    return post_cfg


def seeded_start_noise(samples: torch.Tensor, seed: int, batch_index=None, offset: float = 0.0) -> torch.Tensor:
    """ComfyUI's noise for `seed`, plus `offset` times the original's offset noise drawn next from the same seeded
    generator (MS-Image2Video's start; :data:`START_OFFSET_NOISE`)."""
    noise = comfy.sample.prepare_noise(samples, seed, batch_index)
    if not offset:
        return noise
    generator = torch.Generator().manual_seed(seed)
    torch.randn(samples.shape, dtype=samples.dtype, generator=generator)  # the noise above (no batch_index)
    return add_start_offset(noise, offset, generator)


def run_sampler(model, latent: dict, seed: int, cfg: float, sampler: comfy.samplers.KSAMPLER, sigmas: torch.Tensor,
                positive, negative, offset: float = 0.0) -> dict:
    """Shared tail of both nodes: noise from the seed (with `offset` noise, see :func:`seeded_start_noise`), previews
    + progress per step, ComfyUI sampling."""
    samples = latent["samples"]
    noise = seeded_start_noise(samples, seed, latent.get("batch_index"), offset)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    out = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, samples,
                                     noise_mask=latent.get("noise_mask"), callback=callback,
                                     disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    check_output(out, "sampling")
    result = latent.copy()
    result["samples"] = out
    return result


def sampler_inputs(*, latent_tip: str, steps: int, cfg: float, cfg_tip: str, sampler: str, scheduler: str,
                   scheduler_tip: str, after_seed: dict | None = None, after_cfg: dict | None = None) -> dict:
    """INPUT_TYPES of a sampler node in widget order; `after_seed` / `after_cfg` insert the node's own inputs."""
    return {"required": {
        "model": ("MODEL", {"tooltip": "The I2VGen-XL family UNet from I2VGen-XL Model Loader."}),
        "positive": ("CONDITIONING", {"tooltip": "Positive conditioning from I2VGenXLConditioning (text, CLIP image "
                                                 "embedding, image latent and fps, as the model needs)."}),
        "negative": ("CONDITIONING", {"tooltip": "Negative conditioning from I2VGenXLConditioning (its CLIP image "
                                                 "embedding is zero, as in the original unconditional branch)."}),
        "latent_image": ("LATENT", {"tooltip": latent_tip}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                         "tooltip": "Random seed of the starting noise."}),
        **(after_seed or {}),
        "steps": ("INT", {"default": steps, "min": 1, "max": 1000,
                          "tooltip": "Number of denoising steps (model evaluations per step depend on the sampler)."}),
        "cfg": ("FLOAT", {"default": cfg, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01, "tooltip": cfg_tip}),
        **(after_cfg or {}),
        "sampler_name": (comfy.samplers.KSampler.SAMPLERS, {
            "default": sampler, "tooltip": "ComfyUI sampling algorithm; 'ddim' is deterministic DDIM (eta 0)."}),
        "scheduler": (comfy.samplers.KSampler.SCHEDULERS, {"default": scheduler, "tooltip": scheduler_tip}),
    }}


class I2VGenXLSampler:
    """Base-stage sampler: generates a video latent from noise with I2VGen-XL or MS-Image2Video."""

    DESCRIPTION = ("Generates a video latent from noise with I2VGen-XL or the MS-Image2Video cascade base, using "
                   "ComfyUI's samplers (previews, progress and cancel included). Defaults reproduce the original "
                   "sampling: DDIM, 50 steps, timesteps 981..1 (ddim + ddim_uniform), plain start noise (plus "
                   "MS-Image2Video's offset noise), the last step to timestep 0, cfg 9 for I2VGen-XL (use 3 for "
                   "MS-Image2Video). For the MS-Vid2Vid-XL refiner use I2VGen-XL Refine Sampler.")
    CATEGORY = "I2VGen-XL/sampling"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The denoised video latent [batch, 4, frames, height/8, width/8]; decode it with "
                       "I2VGenXLVideoDecode or refine it.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return sampler_inputs(
            latent_tip="Empty video latent from I2VGenXLConditioning; its size sets width, height, frames and batch.",
            steps=50, cfg=9.0,
            cfg_tip="Classifier-free guidance scale. 9.0 for I2VGen-XL (the paper's value); 3.0 is recommended for "
                    "MS-Image2Video.",
            sampler="ddim", scheduler="ddim_uniform",
            scheduler_tip="How the steps are spread over the noise levels; ddim_uniform = the original DDIM "
                          "'leading' timesteps (981, 961, ..., 1 for 50 steps).") | {"optional": {
            "final_step": (list(FINAL_STEPS), {
                "default": FINAL_STEPS[0],
                "tooltip": "original: the last step goes to timestep 0, as the original DDIM loops do (a little of the "
                           "predicted noise stays: 0.6% for I2VGen-XL, 2.9% for MS-Image2Video). clean: to noise 0, "
                           "the clean prediction, as ComfyUI's KSampler and diffusers end."})}}

    def sample(self, model, positive, negative, latent_image, seed: int, steps: int = 50, cfg: float = 9.0,
               sampler_name: str = "ddim", scheduler: str = "ddim_uniform", final_step: str = FINAL_STEPS[0]):
        if final_step not in FINAL_STEPS:
            raise ValueError(f"I2VGen-XL Sampler: final_step is {final_step!r}; expected one of "
                             f"{', '.join(FINAL_STEPS)}")
        variant = model_variant(model)
        if variant == "ms_vid2vid_xl":
            raise ValueError("This MODEL is MS-Vid2Vid-XL, the cascade's refinement stage: it does not generate from "
                             "noise. Use it in I2VGen-XL Refine Sampler (I2VGenXLRefineSampler) on the output of the "
                             "base stage.")
        checked_samples(model, variant, latent_image, positive, negative)
        sigmas, scale = base_sigmas(model, scheduler, steps, sampler_name), 1.0
        if final_step == "original":
            sigma_t0 = float(model.get_model_object("model_sampling").sigmas[0])
            sigmas, scale = end_at_first_timestep(sigmas, sigma_t0)
        out = run_sampler(model, latent_image, seed, cfg, _OriginalStart(sampler_name), sigmas, positive, negative,
                          offset=start_offset_strength(variant))
        if scale != 1.0:  # the VE sample at timestep 0's sigma, as the original's VP latent
            out["samples"] = out["samples"] * scale
        return (out,)


class I2VGenXLRefineSampler:
    """SDEdit refinement: noise an existing video latent to `strength` and denoise it (MS-Vid2Vid-XL stage)."""

    DESCRIPTION = ("Refines a video latent the way the I2VGen-XL cascade's second stage did: the latent is noised to "
                   "timestep round(strength*1000)-1 (599 for 0.6) and denoised back to 0 with guidance rescale. "
                   "Works with MS-Vid2Vid-XL (text-only, 1280x720) and with I2VGen-XL itself. Defaults are the "
                   "original's: dpmpp_2m_sde, 30 steps, cfg 7.5, rescale 0.2.")
    CATEGORY = "I2VGen-XL/sampling"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The refined video latent, same size as the input.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        strength = ("FLOAT", {"default": 0.6, "min": 0.01, "max": 1.0, "step": 0.01, "tooltip":
                              "How much of the input is re-imagined: noise is added up to timestep "
                              "round(strength*1000)-1. 0.6 (t=599) is the original; lower keeps more."})
        guidance_rescale = ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                                      "Pulls the guided prediction's std towards the conditional one's to avoid "
                                      "over-saturation at high cfg (0.2 in the original; 0 = off)."})
        inputs = sampler_inputs(
            latent_tip="Video latent to refine: the base stage's output, upscaled with I2VGenXLLatentUpscale, or "
                       "I2VGenXLVideoEncode's.",
            steps=30, cfg=7.5, cfg_tip="Classifier-free guidance scale (7.5 in the original refiner).",
            sampler="dpmpp_2m_sde", scheduler="simple",
            scheduler_tip="How the steps are spread over timesteps 0..t_start; 'simple' starts exactly at t_start "
                          "with even ('trailing') spacing like the original.",
            after_seed={"strength": strength}, after_cfg={"guidance_rescale": guidance_rescale})
        inputs["optional"] = {
            "context_frames": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip":
                                       "Refine in overlapping temporal windows of this many frames (32 for "
                                       "MS-Vid2Vid-XL), so videos of any length fit in the memory of one window; "
                                       "0 = off (the whole video at once)."}),
            "context_overlap": ("INT", {"default": 8, "min": 0, "max": 1023, "tooltip":
                                        "Frames shared by neighbouring windows, cross-faded every step (used when "
                                        "context_frames > 0; must be below it)."}),
        }
        return inputs

    def sample(self, model, positive, negative, latent_image, seed: int, strength: float = 0.6, steps: int = 30,
               cfg: float = 7.5, guidance_rescale: float = 0.2, sampler_name: str = "dpmpp_2m_sde",
               scheduler: str = "simple", context_frames: int = 0, context_overlap: int = 8):
        variant = model_variant(model)
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}.")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale must be between 0 and 1, got {guidance_rescale}.")
        samples = checked_samples(model, variant, latent_image, positive, negative)
        if context_frames > 0:
            problem = windows_batch_problem(samples, context_frames)
            if problem:
                raise ValueError(f"I2VGen-XL Refine Sampler: {problem}.")
            model = with_context_windows(model, context_frames, context_overlap, "I2VGen-XL Refine Sampler")
        if guidance_rescale > 0.0 and abs(cfg - 1.0) > 1e-6:
            model = model.clone()
            model.set_model_sampler_post_cfg_function(guidance_rescale_post_cfg(guidance_rescale))
        sigmas = refine_sigmas(model, scheduler, steps, strength, sampler_name)
        b, _, f, h, w = samples.shape
        estimate = refine_estimate(width=w * VAE_SCALE, height=h * VAE_SCALE, frames=f, batch=b,
                                   context_frames=context_frames, cfg=cfg, settings=model_settings(model))
        start = _OriginalStart(sampler_name, sdedit_scale=sdedit_start_scale(float(sigmas[0])))
        out = run_sampler(model, latent_image, seed, cfg, start, sigmas, positive, negative)
        return {"ui": {"text": estimate}, "result": (out,)}


def refine_estimate(*, width: int, height: int, frames: int, batch: int, context_frames: int, cfg: float,
                    settings: dict, refuse: bool = True) -> list[str]:
    """The Refine Sampler's memory estimate (when it runs, and before: GET /i2vgen-xl/memory_estimate/refine): with
    context windows the activations are those of one window."""
    window = min(frames, context_frames) if context_frames > 0 else frames
    return check_run("I2VGen-XL Refine Sampler", width=width, height=height, frames=window, batch=batch,
                     cfg_batched=abs(cfg - 1.0) > 1e-6, refuse=refuse, windows=max(0, int(context_frames)),
                     **settings)


NODE_CLASS_MAPPINGS = {
    "I2VGenXLSampler": I2VGenXLSampler,
    "I2VGenXLRefineSampler": I2VGenXLRefineSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "I2VGenXLSampler": "I2VGen-XL Sampler",
    "I2VGenXLRefineSampler": "I2VGen-XL Refine Sampler",
}

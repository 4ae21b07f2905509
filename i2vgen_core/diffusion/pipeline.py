"""Base and refine stages of the I2VGen-XL family, from already-encoded conditioning to latents.

The UNet is called as ``unet(sample, timestep, *, text=, image_embedding=, image_latent=, fps=)`` and returns a
v-prediction; which conditioning it takes is read from ``unet.config`` (``use_text``, ``use_image_embedding``,
``use_image_latent``, ``use_fps``) and the noise schedule from ``unet.variant``. Classifier-free guidance is batched:
one UNet call on ``[uncond, cond]``. The unconditional branch is the negative text, a ZERO image embedding and the
same image latent and fps (as in VGen's ``use_zero_infer`` and the diffusers pipeline).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..video.frames import image_latent_frame
from .samplers import (SDEDIT_METHODS, add_start_offset, cfg_combine, noise_to_strength, sample,
                       start_offset_strength, strength_to_timestep)
from .schedules import alphas_cumprod, schedule_for_variant

__all__ = ["run_base_stage", "run_refine_stage"]

Callback = Callable[[int, int, torch.Tensor], None]


def _flag(unet: torch.nn.Module, name: str) -> bool:
    """A conditioning switch of the UNet config (absent means used)."""
    return bool(getattr(getattr(unet, "config", None), name, True))


def _param(unet: torch.nn.Module) -> torch.Tensor:
    """Any parameter of the UNet, to read its device and dtype."""
    try:
        return next(unet.parameters())
    except StopIteration:
        return torch.empty(0)


def _batched(x: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """Broadcast a batch-1 tensor to ``batch``; reject other mismatches."""
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    raise ValueError(f"{what} has batch size {x.shape[0]} but the latents have {batch}; pass 1 or {batch} of them")


def _conditioning(
    unet: torch.nn.Module,
    batch: int,
    *,
    text: Optional[torch.Tensor],
    negative_text: Optional[torch.Tensor],
    image_embedding: Optional[torch.Tensor],
    image_latent: Optional[torch.Tensor],
    fps,
    guided: bool,
) -> tuple[dict, Optional[dict]]:
    """Keyword arguments of the UNet for the conditional and (when guided) unconditional branch."""
    param = _param(unet)
    dev, dt = param.device, param.dtype
    variant = getattr(unet, "variant", "model")
    cond: dict = {}
    uncond: dict = {}

    def need(value, name: str, hint: str) -> torch.Tensor:
        if value is None:
            raise ValueError(f"the {variant} UNet needs {name} ({hint}) but none was given")
        return value

    if _flag(unet, "use_text"):
        cond["text"] = _batched(need(text, "text", "encoded prompt [B,77,1024]").to(dev, dt), batch, "text")
        if guided:
            neg = need(negative_text, "negative_text", "encoded negative prompt [B,77,1024]; encode '' for none")
            uncond["text"] = _batched(neg.to(dev, dt), batch, "negative_text")
    if _flag(unet, "use_image_embedding"):
        emb = need(image_embedding, "image_embedding", "projected CLIP image embedding [B,1024]").to(dev, dt)
        emb = _batched(emb.reshape(emb.shape[0], -1), batch, "image_embedding")
        cond["image_embedding"] = emb
        uncond["image_embedding"] = torch.zeros_like(emb)
    if _flag(unet, "use_image_latent"):
        lat = need(image_latent, "image_latent", "VAE latent of the input image [B,4,h,w]").to(dev, dt)
        lat = _batched(image_latent_frame(lat), batch, "image_latent")
        cond["image_latent"] = uncond["image_latent"] = lat
    if _flag(unet, "use_fps"):
        if fps is None:
            fps = getattr(getattr(unet, "config", None), "default_fps", 16)
        fps_t = torch.as_tensor(fps, device=dev).reshape(-1).long()
        cond["fps"] = uncond["fps"] = _batched(fps_t, batch, "fps")
    return cond, (uncond if guided else None)


def _guided_model(unet, cond: dict, uncond: Optional[dict], scale: float, rescale: float = 0.0):
    """``model_fn(x, t)``: one UNet call on ``[uncond, cond]`` combined with classifier-free guidance."""
    dt = getattr(unet, "dtype", None) or _param(unet).dtype  # compute dtype (weights may be stored in fp8)
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond} if uncond is not None else None

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if both is None:
            return unet(x.to(dt), t, **cond).to(x.dtype)
        out = unet(torch.cat([x, x]).to(dt), torch.cat([t, t]), **both).to(x.dtype)
        out_uncond, out_cond = out.chunk(2)
        return cfg_combine(out_uncond, out_cond, scale, rescale)

    return model_fn


def _start_noise(shape, noise, generator, device) -> torch.Tensor:
    """The given noise (checked against ``shape``) or fresh float32 noise from ``generator``."""
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)} but the latents need {tuple(shape)}")
        return noise.to(device)
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)


@torch.no_grad()
def run_base_stage(
    unet: torch.nn.Module,
    *,
    text: Optional[torch.Tensor],
    negative_text: Optional[torch.Tensor],
    image_embedding: Optional[torch.Tensor],
    image_latent: Optional[torch.Tensor],
    fps: int = 16,
    num_frames: int = 16,
    steps: int = 50,
    guidance_scale: float = 9.0,
    eta: float = 0.0,
    noise: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    final_alpha: str = "first",
) -> torch.Tensor:
    """Generate base-stage latents ``[B,4,F,h,w]`` with the original's DDIM (its timesteps for any step
    count, 981..1 at 50) and batched CFG.

    ``image_latent`` is the scaled VAE latent of the conditioning image (``[B,4,h,w]``; it also fixes h and w).
    ``noise`` (``[B,4,F,h,w]``) overrides the start noise drawn from ``generator`` (drawn noise has the variant's
    offset noise added, MS-Image2Video's ``0.1 * randn(B,4,F,1,1)``; given noise is used as it is).
    ``final_alpha="first"`` is VGen's last DDIM step, ``"one"`` the diffusers pipeline's.
    """
    device = _param(unet).device
    if noise is not None:
        shape = tuple(noise.shape)
    elif image_latent is not None:
        shape = (image_latent.shape[0], 4, num_frames, image_latent.shape[-2], image_latent.shape[-1])
    else:
        raise ValueError("run_base_stage needs image_latent or noise to know the latent size")
    if num_frames != shape[2]:
        raise ValueError(f"num_frames is {num_frames} but the noise has {shape[2]} frames")
    if num_frames < 1 or steps < 1:
        raise ValueError(f"num_frames and steps must be at least 1, got {num_frames} and {steps}")
    variant = getattr(unet, "variant", "i2vgen_xl")
    x = _start_noise(shape, noise, generator, device)
    if noise is None:  # drawn here: the variant's offset noise follows from the same generator, as the original's
        x = add_start_offset(x, start_offset_strength(variant), generator)
    guided = guidance_scale != 1.0
    cond, uncond = _conditioning(unet, shape[0], text=text, negative_text=negative_text,
                                 image_embedding=image_embedding, image_latent=image_latent, fps=fps, guided=guided)
    abar = alphas_cumprod(schedule_for_variant(variant))
    model_fn = _guided_model(unet, cond, uncond, guidance_scale)
    return sample(model_fn, x, abar, method="ddim", steps=steps, eta=eta, final_alpha=final_alpha,
                  generator=generator, callback=callback)


@torch.no_grad()
def run_refine_stage(
    unet: torch.nn.Module,
    latents: torch.Tensor,
    *,
    text: Optional[torch.Tensor],
    negative_text: Optional[torch.Tensor],
    strength: float = 0.6,
    steps: int = 30,
    guidance_scale: float = 7.5,
    guidance_rescale: float = 0.2,
    method: str = "dpmpp_2m_sde",
    noise: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    image_embedding: Optional[torch.Tensor] = None,
    image_latent: Optional[torch.Tensor] = None,
    fps: Optional[int] = None,
) -> torch.Tensor:
    """SDEdit refinement of clean latents ``[B,4,F,h,w]`` as MS-Vid2Vid-XL did it.

    Latents are diffused to ``t = strength_to_timestep(strength)`` (0.6 -> 599) with ``noise``, then denoised with
    DPM-Solver++(2M) SDE (30 steps) or Heun (50 in the original "slow" mode) on the trailing discretisation from that
    t to 0, starting (like the reference) from ``x_t * sigmas[0]``. ``generator`` feeds the SDE noise (and the start
    noise when ``noise`` is None). Image-conditioned UNets also need ``image_embedding`` / ``image_latent``.
    """
    if method not in SDEDIT_METHODS:
        raise ValueError(f"unknown refine method {method!r}; expected one of {', '.join(SDEDIT_METHODS)}")
    if latents.ndim != 5:
        raise ValueError(f"latents must be [B,4,F,h,w], got shape {tuple(latents.shape)}")
    device = _param(unet).device
    latents = latents.to(device)
    x0 = latents.float() if latents.dtype in (torch.float16, torch.bfloat16) else latents
    eps = _start_noise(x0.shape, noise, generator, device).to(x0.dtype)
    abar = alphas_cumprod(schedule_for_variant(getattr(unet, "variant", "ms_vid2vid_xl")))
    t_max = strength_to_timestep(strength, abar.shape[0])
    x_t = noise_to_strength(x0, eps, strength, abar)
    guided = guidance_scale != 1.0
    cond, uncond = _conditioning(unet, x0.shape[0], text=text, negative_text=negative_text,
                                 image_embedding=image_embedding, image_latent=image_latent, fps=fps, guided=guided)
    model_fn = _guided_model(unet, cond, uncond, guidance_scale, guidance_rescale)
    return sample(model_fn, x_t, abar, method=method, steps=steps, t_max=t_max, generator=generator,
                  callback=callback)

"""Samplers of the I2VGen-XL family as plain functions over tensors.

Conventions shared by every function here:

* ``abar`` is an ``alphas_cumprod`` table from :mod:`i2vgen_core.diffusion.schedules` (float64, on any device; it is only read
  as Python floats, so the sampling loop never synchronises with the GPU for it).
* ``model_fn(x, t) -> out`` is called with the VP-scaled sample ``x`` (``x_t = sqrt(abar_t) x_0 + sqrt(1-abar_t) eps``)
  and an integer timestep tensor ``t`` of shape ``[B]``; it returns the (already guided) model prediction, a
  v-prediction unless stated otherwise.
* ``callback(step, total, x0_pred)`` runs after every step, ``step`` counting from 0; an exception raised in it
  (e.g. a user interruption) propagates out of the sampler unchanged.
* ``noise_sampler(level, next_level) -> Tensor`` returns a standard-normal tensor shaped like the sample for the
  stochastic part of a step (DDIM with eta > 0, DPM-Solver++ SDE); by default it draws from ``generator``.
* DDIM works on VP samples. The k-diffusion style solvers (DPM-Solver++(2M) SDE, Heun) work on VE samples
  ``x / sqrt(abar)`` with VE sigmas ``sqrt((1-abar)/abar)``, exactly as the MS-Vid2Vid-XL refiner did.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

import torch

from .schedules import sigma_to_timestep, timestep_to_sigma

__all__ = [
    "x0_from_v",
    "eps_from_v",
    "v_from_x0_eps",
    "cfg_combine",
    "ddim_timesteps",
    "original_ddim_previous",
    "sample_ddim",
    "strength_to_timestep",
    "noise_to_strength",
    "sdedit_start_scale",
    "sdedit_sigmas",
    "vpred_denoiser",
    "sample_dpmpp_2m_sde",
    "sample_heun",
    "sample",
    "METHODS",
    "SDEDIT_METHODS",
    "START_OFFSET_NOISE",
    "start_offset_strength",
    "add_start_offset",
    "FINAL_STEPS",
    "end_at_first_timestep",
]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
Callback = Callable[[int, int, torch.Tensor], None]
NoiseSampler = Callable[[float, float], torch.Tensor]

#: Methods that can start from a partly noised sample (SDEdit, the MS-Vid2Vid-XL refiner).
SDEDIT_METHODS = ("dpmpp_2m_sde", "heun")

#: Sampling methods understood by :func:`sample`: DDIM (from pure noise) and the SDEdit-capable ones.
METHODS = ("ddim",) + SDEDIT_METHODS

#: Offset noise in the base stage's start latent, per variant: MS-Image2Video's pipeline (``build_noise``) adds
#: ``noise_strength`` = 0.1 times one standard-normal value per (batch, channel, frame) to its Gaussian start noise.
#: VGen's I2VGen-XL inference starts from plain noise (its 0.1 is a training setting) and MS-Vid2Vid-XL noises its
#: input latent with plain noise.
START_OFFSET_NOISE: Mapping[str, float] = MappingProxyType(
    {"i2vgen_xl": 0.0, "ms_image2video": 0.1, "ms_vid2vid_xl": 0.0})


#: Where a base-stage sampler's last step goes: "original" = to alphas_cumprod[0] (VGen's and ModelScope's DDIM:
#: ``(t - stride).clamp(0)``), "clean" = to alpha 1 / sigma 0 (ComfyUI's and diffusers' ending, the clean prediction).
FINAL_STEPS = ("original", "clean")


def end_at_first_timestep(sigmas: torch.Tensor, sigma_t0: float) -> tuple[torch.Tensor, float]:
    """VE sigmas ending at timestep 0's sigma instead of 0, as the original DDIM's last step, and the factor
    ``1 / sqrt(1 + sigma_end^2)`` that turns the VE sample there into the original's VP latent.

    A schedule already at or below ``sigma_t0`` before its final 0 just drops the 0; one not ending in 0 is kept.
    """
    if len(sigmas) < 2 or float(sigmas[-1]) != 0.0:
        return sigmas, 1.0
    if float(sigmas[-2]) > sigma_t0 * (1.0 + 1e-6):  # tolerant of float32 copies of the same sigma
        sigmas = torch.cat([sigmas[:-1], sigmas.new_tensor([sigma_t0])])
    else:
        sigmas = sigmas[:-1]
    return sigmas, 1.0 / math.sqrt(1.0 + float(sigmas[-1]) ** 2)


def start_offset_strength(variant: str) -> float:
    """Offset-noise strength of a variant's base-stage start noise (see :data:`START_OFFSET_NOISE`)."""
    try:
        return START_OFFSET_NOISE[variant]
    except KeyError:
        known = ", ".join(START_OFFSET_NOISE)
        raise ValueError(f"Unknown model variant {variant!r}; expected one of {known}.") from None


def add_start_offset(noise: torch.Tensor, strength: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``noise + strength * n``, n one standard-normal value per (batch, channel, frame) of ``[B, C, F, H, W]`` noise,
    drawn from `generator` (the original draws it right after the noise, from the same generator)."""
    if not strength:
        return noise
    b, c, f = noise.shape[:3]
    gen_device = generator.device if generator is not None else noise.device
    offset = torch.randn((b, c, f, 1, 1), generator=generator, device=gen_device, dtype=torch.float32)
    return noise + strength * offset.to(device=noise.device, dtype=noise.dtype)


# --------------------------------------------------------------------------------------------------------------------
# parameterisation and guidance


def x0_from_v(x: torch.Tensor, v: torch.Tensor, abar) -> torch.Tensor:
    """Clean sample from a v-prediction: ``sqrt(abar) x - sqrt(1-abar) v``."""
    return abar**0.5 * x - (1.0 - abar) ** 0.5 * v


def eps_from_v(x: torch.Tensor, v: torch.Tensor, abar) -> torch.Tensor:
    """Noise from a v-prediction: ``sqrt(abar) v + sqrt(1-abar) x``."""
    return abar**0.5 * v + (1.0 - abar) ** 0.5 * x


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, abar) -> torch.Tensor:
    """The v-prediction training target ``sqrt(abar) eps - sqrt(1-abar) x0``."""
    return abar**0.5 * eps - (1.0 - abar) ** 0.5 * x0


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float, rescale: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance ``u + scale (c - u)``, optionally rescaled towards the std of ``c`` (per batch item)."""
    out = uncond + scale * (cond - uncond)
    if rescale:
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"guidance rescale must be in [0, 1], got {rescale}")
        shape = (-1,) + (1,) * (cond.ndim - 1)
        ratio = cond.flatten(1).std(dim=1) / (out.flatten(1).std(dim=1) + 1e-12)
        out = out * (rescale * ratio.view(shape) + (1.0 - rescale))
    return out


def _to_x0_eps(x: torch.Tensor, out: torch.Tensor, abar_t: float, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from a model output of the given parameterisation at one timestep."""
    if prediction == "v":
        return x0_from_v(x, out, abar_t), eps_from_v(x, out, abar_t)
    if prediction == "eps":
        return (x - (1.0 - abar_t) ** 0.5 * out) / abar_t**0.5, out
    raise ValueError(f"unknown prediction type {prediction!r}; expected 'v' or 'eps'")


def _gaussian(generator: Optional[torch.Generator]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Standard-normal draws shaped like a tensor, from ``generator`` (on its own device) or the global RNG."""

    def draw(like: torch.Tensor) -> torch.Tensor:
        device = generator.device if generator is not None else like.device
        noise = torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype)
        return noise.to(like.device)

    return draw


# --------------------------------------------------------------------------------------------------------------------
# DDIM (I2VGen-XL, MS-Image2Video)


def ddim_timesteps(steps: int, n: int = 1000, spacing: str = "leading", offset: int = 1) -> torch.Tensor:
    """Descending DDIM timesteps; ``leading`` with offset 1 gives 981, 961, ..., 1 for 50 steps (VGen == diffusers).

    ``original`` is VGen's and ModelScope's loop, ``1 + arange(0, n, n // steps)`` clamped to ``n - 1``: the same as
    ``leading`` when ``steps`` divides ``n``, otherwise ``ceil(n / (n // steps))`` timesteps from the top (31 from 991
    at 30 steps, where diffusers' ``leading`` visits 30 from 958), with 999 first where ``n // steps`` divides 999.
    """
    if not 1 <= steps <= n:
        raise ValueError(f"DDIM steps must be between 1 and {n}, got {steps}")
    if spacing == "leading":
        ts = torch.arange(steps, dtype=torch.float64) * (n // steps) + offset
    elif spacing == "original":
        ts = torch.arange(0, n, n // steps, dtype=torch.float64) + offset
    elif spacing == "trailing":
        ts = torch.round(torch.arange(n, 0, -n / steps, dtype=torch.float64)) - 1
        ts = ts.flip(0)
    elif spacing == "linspace":
        ts = torch.linspace(0, n - 1, steps, dtype=torch.float64).round()
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; expected 'leading', 'original', 'trailing' or "
                         f"'linspace'")
    return ts.clamp(0, n - 1).long().flip(0)


def original_ddim_previous(timesteps: torch.Tensor, steps: int, n: int = 1000) -> list[int]:
    """The timestep each ``original``-spaced step moves to, ``(t - n // steps).clamp(0)`` as VGen computes it.

    It is the next timestep, except after a first timestep clamped to 999 (stride 333 at 3 steps: 999 moves to 666,
    and the next step starts at 667; VGen's own code marks that clamp as inaccurate) and after the last (0).
    """
    stride = n // steps
    return [max(int(t) - stride, 0) for t in timesteps]


def sample_ddim(
    model_fn: ModelFn,
    x: torch.Tensor,
    abar: torch.Tensor,
    timesteps: Sequence[int] | torch.Tensor,
    *,
    eta: float = 0.0,
    final_alpha: str = "first",
    prediction: str = "v",
    generator: Optional[torch.Generator] = None,
    noise_sampler: Optional[NoiseSampler] = None,
    callback: Optional[Callback] = None,
    previous: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """DDIM from ``x`` at ``timesteps[0]`` down to a clean sample.

    The previous timestep of each step is the next entry of ``timesteps``, or ``previous[i]`` when given (the
    original's ``t - stride``, :func:`original_ddim_previous`). After the last one, ``final_alpha`` decides the
    target: ``"first"`` (default) uses ``abar[0]`` as the original VGen / ModelScope code does
    (``alphas_cumprod[(t - stride).clamp(0)]``); ``"one"`` uses 1.0 like diffusers' ``set_alpha_to_one=True``.
    """
    if final_alpha not in ("first", "one"):
        raise ValueError(f"final_alpha must be 'first' or 'one', got {final_alpha!r}")
    ts = [int(t) for t in timesteps]
    table = abar.detach().to("cpu", torch.float64).tolist()
    last = 1.0 if final_alpha == "one" else table[0]
    draw = _gaussian(generator)
    targets = [int(p) for p in previous] if previous is not None else ts[1:]
    for i, t in enumerate(ts):
        a_t = table[t]
        t_prev = targets[i] if i + 1 < len(ts) else -1  # -1: past the last timestep, to `final_alpha`
        a_prev = table[t_prev] if t_prev >= 0 else last
        out = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        x0, eps = _to_x0_eps(x, out, a_t, prediction)
        std = eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)) if eta else 0.0
        x = a_prev**0.5 * x0 + max(1.0 - a_prev - std**2, 0.0) ** 0.5 * eps
        if std:
            x = x + std * (noise_sampler(t, t_prev) if noise_sampler else draw(x))
        if callback is not None:
            callback(i, len(ts), x0)
    return x


# --------------------------------------------------------------------------------------------------------------------
# SDEdit and k-diffusion style solvers (MS-Vid2Vid-XL refiner)


def strength_to_timestep(strength: float, n: int = 1000) -> int:
    """SDEdit start timestep: ``round(strength * n) - 1`` (0.6 -> 599), capped at ``n - 2`` (finite VE sigma)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"denoising strength must be in (0, 1], got {strength}")
    return min(max(round(strength * n) - 1, 0), n - 2)


def noise_to_strength(x0: torch.Tensor, noise: torch.Tensor, strength: float, schedule: torch.Tensor) -> torch.Tensor:
    """Diffuse clean latents to the SDEdit start: ``x_t = sqrt(abar_t) x0 + sqrt(1-abar_t) noise``.

    ``schedule`` is an ``alphas_cumprod`` table; ``t = strength_to_timestep(strength, len(schedule))``.
    """
    a_t = float(schedule[strength_to_timestep(strength, schedule.shape[0])])
    return a_t**0.5 * x0 + (1.0 - a_t) ** 0.5 * noise


def sdedit_start_scale(sigma: float) -> float:
    """How much lower the MS-Vid2Vid-XL refiner starts than the exact VE SDEdit sample ``x0 + sigma noise``.

    Its solvers start from ``x_t * sigma`` (``x_t`` the VP sample at ``sigma``) where ``x_t / sqrt(abar)`` =
    ``x_t sqrt(1 + sigma^2)`` is the VE sample, so the start is ``sigma / sqrt(1 + sigma^2)`` (= ``sqrt(1 - abar)``,
    0.972 at t = 599) times the exact one. :func:`sample` and the Refine Sampler node both start there.
    """
    return sigma / math.sqrt(1.0 + sigma * sigma)


def sdedit_sigmas(
    abar: torch.Tensor,
    steps: int,
    t_max: int,
    t_min: int = 0,
    discretization: str = "trailing",
    discard_penultimate: bool = False,
) -> torch.Tensor:
    """Descending VE sigmas from ``t_max`` to ``t_min`` followed by a final 0 (MS-Vid2Vid-XL discretisation).

    ``discard_penultimate`` (used with DPM-Solver++(2M) SDE) discretises ``steps + 1`` timesteps and then drops the
    smallest non-zero sigma, so the solver still takes ``steps`` steps.
    """
    n = abar.shape[0]
    if not 0 <= t_min < t_max <= n - 1:
        raise ValueError(f"need 0 <= t_min < t_max <= {n - 1}, got t_min={t_min}, t_max={t_max}")
    count = steps + (1 if discard_penultimate else 0)
    span = t_max - t_min + 1
    if discretization == "trailing":
        ts = torch.arange(t_max, t_min - 1, -span / count, dtype=torch.float64)
    elif discretization == "leading":
        ts = torch.arange(t_min, t_max + 1, span / count, dtype=torch.float64).flip(0)
    elif discretization == "linspace":
        ts = torch.linspace(t_max, t_min, count, dtype=torch.float64)
    else:
        raise ValueError(f"unknown discretization {discretization!r}; expected 'trailing', 'leading' or 'linspace'")
    sigmas = [timestep_to_sigma(abar, t) for t in ts.clamp(t_min, t_max).tolist()] + [0.0]
    if discard_penultimate:
        sigmas = sigmas[:-2] + sigmas[-1:]
    return torch.tensor(sigmas, dtype=torch.float64)


def vpred_denoiser(model_fn: ModelFn, abar: torch.Tensor, prediction: str = "v") -> Denoiser:
    """Wrap ``model_fn`` as a VE denoiser ``D(x, sigma) -> x0``, as the MS-Vid2Vid-XL refiner evaluated it.

    The input is scaled by ``c_in = 1/sqrt(sigma^2+1)``, the timestep is ``round(t(sigma))`` and x0 is formed with the
    schedule's alpha and sigma at that integer timestep.
    """
    table = abar.detach().to("cpu", torch.float64)

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = round(sigma_to_timestep(table, sigma))
        x_in = x * (1.0 / math.sqrt(sigma**2 + 1.0))
        out = model_fn(x_in, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        return _to_x0_eps(x_in, out, float(table[t]), prediction)[0]

    return denoise


def _sigma_list(sigmas: torch.Tensor | Sequence[float]) -> list[float]:
    """Sigmas as Python floats; rejects an infinite start (a zero-terminal-SNR t = n-1 cannot be an SDEdit start)."""
    values = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if any(math.isinf(s) for s in values):
        raise ValueError("sigma schedule contains inf (the zero-SNR timestep); start at t <= n - 2 instead")
    return values


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
    generator: Optional[torch.Generator] = None,
    noise_sampler: Optional[NoiseSampler] = None,
    callback: Optional[Callback] = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (k-diffusion formulation) on the VE sample ``x`` at ``sigmas[0]``."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    sig = _sigma_list(sigmas)
    draw = _gaussian(generator)
    old_denoised, h_last = None, None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, s)
        if s_next == 0:
            x = denoised
        else:
            h = math.log(s) - math.log(s_next)
            eta_h = eta * h
            decay = -math.expm1(-h - eta_h)
            x = (s_next / s * math.exp(-eta_h)) * x + decay * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "midpoint":
                    x = x + (0.5 * decay / r) * (denoised - old_denoised)
                else:
                    x = x + ((decay / (-h - eta_h) + 1.0) / r) * (denoised - old_denoised)
            if eta:
                noise = noise_sampler(s, s_next) if noise_sampler else draw(x)
                x = x + noise * (s_next * math.sqrt(-math.expm1(-2.0 * eta_h)) * s_noise)
            h_last = h
        old_denoised = denoised
        if callback is not None:
            callback(i, len(sig) - 1, denoised)
    return x


def sample_heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    callback: Optional[Callback] = None,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 2 without churn) on the VE sample ``x``."""
    sig = _sigma_list(sigmas)
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, s)
        d = (x - denoised) / s
        dt = s_next - s
        if s_next == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = (x_2 - denoiser(x_2, s_next)) / s_next
            x = x + (d + d_2) * (dt / 2.0)
        if callback is not None:
            callback(i, len(sig) - 1, denoised)
    return x


# --------------------------------------------------------------------------------------------------------------------
# one entry point


def sample(
    model_fn: ModelFn,
    x: torch.Tensor,
    abar: torch.Tensor,
    *,
    method: str = "ddim",
    steps: int = 50,
    t_max: Optional[int] = None,
    eta: Optional[float] = None,
    final_alpha: str = "first",
    generator: Optional[torch.Generator] = None,
    noise_sampler: Optional[NoiseSampler] = None,
    callback: Optional[Callback] = None,
) -> torch.Tensor:
    """Sample from the VP sample ``x`` (pure noise, or an SDEdit start at ``t_max``) with one of :data:`METHODS`.

    ``ddim`` runs the original's full schedule (``original`` spacing of :func:`ddim_timesteps`; ``t_max`` must be
    None). ``dpmpp_2m_sde`` / ``heun`` use the trailing discretisation from ``t_max`` (default ``n - 2``) to 0 and
    start, like the MS-Vid2Vid-XL reference, from ``x * sigmas[0]``. ``eta`` defaults to 0 for DDIM and 1 for
    DPM-Solver++ SDE.
    """
    if method == "ddim":
        if t_max is not None:
            raise ValueError("DDIM sampling here always starts from pure noise; use dpmpp_2m_sde or heun for SDEdit")
        timesteps = ddim_timesteps(steps, abar.shape[0], spacing="original")
        return sample_ddim(model_fn, x, abar, timesteps, eta=eta or 0.0, final_alpha=final_alpha,
                           generator=generator, noise_sampler=noise_sampler, callback=callback,
                           previous=original_ddim_previous(timesteps, steps, abar.shape[0]))
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {', '.join(METHODS)}")
    t_max = abar.shape[0] - 2 if t_max is None else t_max
    sigmas = sdedit_sigmas(abar, steps, t_max, 0, "trailing", discard_penultimate=method == "dpmpp_2m_sde")
    denoiser = vpred_denoiser(model_fn, abar)
    x = x * float(sigmas[0])
    if method == "dpmpp_2m_sde":
        return sample_dpmpp_2m_sde(denoiser, x, sigmas, eta=1.0 if eta is None else eta, generator=generator,
                                   noise_sampler=noise_sampler, callback=callback)
    return sample_heun(denoiser, x, sigmas, callback=callback)

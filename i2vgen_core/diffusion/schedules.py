"""Noise schedules of the I2VGen-XL family, as float64 tables of length ``n`` (default 1000).

Every schedule is expressed as ``alphas_cumprod`` (written ``abar``): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.

* ``cosine_zero_snr`` (I2VGen-XL, VGen ``DiffusionDDIM`` and the hub ``DDIMScheduler`` config): cosine betas
  (s = 0.008, beta capped at 0.999) rescaled to zero terminal SNR (Lin et al. 2023, Algorithm 1).
* ``linear_sd`` (MS-Image2Video): ``betas = linspace(sqrt(0.00085), sqrt(0.012), n) ** 2``.
* ``logsnr_cosine_interp_zero_snr`` (MS-Vid2Vid-XL): logSNR interpolated between the cosine logSNR shifted by
  scale 2 and by scale 4 (logSNR range [-15, 15]); the VP sigma is then stretched so its maximum is exactly 1.

Helpers convert between VP quantities (``alpha = sqrt(abar)``, ``sigma_vp = sqrt(1 - abar)``) and the VE sigma
used by k-diffusion style solvers (``sigma_ve = sigma_vp / alpha``).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping

import torch

__all__ = [
    "SCHEDULES",
    "VARIANT_SCHEDULES",
    "alphas_cumprod",
    "schedule_for_variant",
    "cosine_betas",
    "linear_sd_betas",
    "betas_to_alphas_cumprod",
    "rescale_zero_terminal_snr",
    "logsnr_cosine_interp_sigmas",
    "ve_sigmas",
    "vp_alpha_sigma",
    "sigma_to_timestep",
    "timestep_to_sigma",
]

#: Which schedule each model variant was trained with (read-only).
VARIANT_SCHEDULES: Mapping[str, str] = MappingProxyType(
    {
        "i2vgen_xl": "cosine_zero_snr",
        "ms_image2video": "linear_sd",
        "ms_vid2vid_xl": "logsnr_cosine_interp_zero_snr",
    }
)

#: Names accepted by :func:`alphas_cumprod`.
SCHEDULES = (
    "cosine",
    "cosine_zero_snr",
    "linear_sd",
    "logsnr_cosine_interp",
    "logsnr_cosine_interp_zero_snr",
)


def cosine_betas(n: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved-DDPM cosine betas ``min(1 - f((i+1)/n) / f(i/n), max_beta)`` with f(u) = cos((u+s)/(1+s)·π/2)²."""

    def f(u: float) -> float:
        return math.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2

    betas = [min(1.0 - f((i + 1) / n) / f(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float64)


def linear_sd_betas(n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Stable-Diffusion "scaled linear" betas: linear in sqrt(beta) between ``beta_start`` and ``beta_end``."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2


def betas_to_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """Cumulative product of ``1 - betas`` in float64."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def rescale_zero_terminal_snr(abar: torch.Tensor) -> torch.Tensor:
    """Shift and scale ``sqrt(abar)`` so the last entry is exactly 0 and the first one is unchanged."""
    root = abar.to(torch.float64).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    return root**2


def logsnr_cosine_interp_sigmas(
    n: int = 1000,
    logsnr_min: float = -15.0,
    logsnr_max: float = 15.0,
    scale_min: float = 2.0,
    scale_max: float = 4.0,
) -> torch.Tensor:
    """VP sigmas ``sqrt(sigmoid(-logSNR))`` of the interpolated shifted-cosine logSNR schedule (index 0 least noisy)."""
    ramp = torch.linspace(1.0, 0.0, n, dtype=torch.float64)
    a_lo = math.atan(math.exp(-0.5 * logsnr_min))
    a_hi = math.atan(math.exp(-0.5 * logsnr_max))
    cosine = -2.0 * torch.log(torch.tan(a_lo + ramp * (a_hi - a_lo)))
    shifted_min = cosine - 2.0 * math.log(scale_min)
    shifted_max = cosine - 2.0 * math.log(scale_max)
    logsnr = ramp * shifted_min + (1.0 - ramp) * shifted_max
    return torch.sigmoid(-logsnr).sqrt()


def _stretch_sigmas_to_one(sigmas: torch.Tensor) -> torch.Tensor:
    """Affinely map VP sigmas so that their minimum is kept and their maximum becomes exactly 1."""
    lo, hi = sigmas.min(), sigmas.max()
    if hi == 1.0:
        return sigmas
    return lo + (1.0 - lo) * (sigmas - lo) / (hi - lo)


def alphas_cumprod(schedule: str, n: int = 1000) -> torch.Tensor:
    """Float64 ``alphas_cumprod`` table of length ``n`` for a schedule name from :data:`SCHEDULES`."""
    if schedule == "cosine":
        return betas_to_alphas_cumprod(cosine_betas(n))
    if schedule == "cosine_zero_snr":
        return rescale_zero_terminal_snr(betas_to_alphas_cumprod(cosine_betas(n)))
    if schedule == "linear_sd":
        return betas_to_alphas_cumprod(linear_sd_betas(n))
    if schedule in ("logsnr_cosine_interp", "logsnr_cosine_interp_zero_snr"):
        sigmas = logsnr_cosine_interp_sigmas(n)
        if schedule.endswith("_zero_snr"):
            sigmas = _stretch_sigmas_to_one(sigmas)
        return 1.0 - sigmas**2
    raise ValueError(f"Unknown noise schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}.")


def schedule_for_variant(variant: str) -> str:
    """Schedule name a model variant was trained with (see :data:`VARIANT_SCHEDULES`)."""
    try:
        return VARIANT_SCHEDULES[variant]
    except KeyError:
        known = ", ".join(VARIANT_SCHEDULES)
        raise ValueError(f"Unknown model variant {variant!r}; expected one of {known}.") from None


def vp_alpha_sigma(abar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, sigma_vp) = (sqrt(abar), sqrt(1 - abar))``."""
    abar = abar.to(torch.float64)
    return abar.sqrt(), (1.0 - abar).clamp(min=0.0).sqrt()


def ve_sigmas(abar: torch.Tensor) -> torch.Tensor:
    """VE sigmas ``sqrt((1 - abar) / abar)``; ``inf`` where ``abar == 0`` (the zero-terminal-SNR step)."""
    abar = abar.to(torch.float64)
    return ((1.0 - abar) / abar).sqrt()


def timestep_to_sigma(abar: torch.Tensor, t: float) -> float:
    """VE sigma at a possibly fractional timestep, interpolating linearly in log-sigma between table entries."""
    log_sigmas = ve_sigmas(abar).log()
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    log_sigma = (1.0 - w) * float(log_sigmas[lo]) + w * float(log_sigmas[hi]) if w else float(log_sigmas[lo])
    return math.exp(log_sigma) if math.isfinite(log_sigma) else math.inf


def sigma_to_timestep(abar: torch.Tensor, sigma: float) -> float:
    """Inverse of :func:`timestep_to_sigma`: fractional timestep whose log-interpolated VE sigma is ``sigma``."""
    n = abar.shape[0]
    if math.isinf(sigma):
        return float(n - 1)
    log_sigmas = ve_sigmas(abar).log()
    log_sigma = math.log(sigma)
    low = int(torch.searchsorted(log_sigmas, torch.tensor([log_sigma], dtype=torch.float64), right=True)) - 1
    low = min(max(low, 0), n - 2)
    a, b = float(log_sigmas[low]), float(log_sigmas[low + 1])
    w = (log_sigma - a) / (b - a) if math.isfinite(b) else 0.0
    return low + min(max(w, 0.0), 1.0)

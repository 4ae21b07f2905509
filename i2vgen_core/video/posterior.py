"""The conditioning image's VAE latent as the original takes it: one draw from the VAE's diagonal Gaussian posterior.

VGen's ``encode_firsr_stage`` (and ModelScope's I2VGen-XL pipeline) samples ``mean + std * noise``, with the noise
from the global RNG, then scales by 0.18215; ComfyUI's VAE returns the mean. Here the draw takes a seed, so a run
can be repeated.
"""

from __future__ import annotations

import torch

POSTERIORS = ("sample", "mean")
LOGVAR_RANGE = (-30.0, 20.0)  # the clamp of the latent-diffusion DiagonalGaussianDistribution, as VGen and ComfyUI


def posterior_sample(moments: torch.Tensor, seed: int) -> torch.Tensor:
    """``mean + exp(logvar / 2) * noise`` from the encoder's moments ``[B, 2C, h, w]`` (mean, then log-variance),
    the noise drawn in float32 on the CPU from ``seed``; float32, on the moments' device."""
    mean, logvar = moments.float().chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float32)
    return mean + std * noise.to(mean.device)


def posterior_error(posterior: str) -> str | None:
    """Why `posterior` is not a choice (naming the choices), or None when it is one."""
    if posterior not in POSTERIORS:
        return f"posterior must be one of {', '.join(POSTERIORS)}, got {posterior!r}"
    return None


def check_posterior(posterior: str) -> str:
    """The posterior choice, or a ValueError with :func:`posterior_error`'s sentence."""
    problem = posterior_error(posterior)
    if problem:
        raise ValueError(problem)
    return posterior

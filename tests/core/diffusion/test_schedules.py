"""Noise schedules against their reference implementations (diffusers, ModelScope source files)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from i2vgen_core.diffusion import schedules as S

from helpers import modelscope_file

TOL = 1e-6


def _load(name: str, relative: str):
    """Load one ModelScope source file as a stand-alone module."""
    spec = importlib.util.spec_from_file_location(name, modelscope_file(relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cosine_zero_snr_matches_diffusers_hub_scheduler():
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", rescale_betas_zero_snr=True)
    ours = S.alphas_cumprod("cosine_zero_snr")
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    assert (ours - ref.alphas_cumprod.double()).abs().max().item() <= TOL


def test_cosine_zero_snr_matches_vgen_formula():
    """VGen: cosine betas (same formula as ModelScope's 'cosine'), float64, then Lin et al. Algorithm 1 on betas."""
    betas = _load("_ref_i2v_schedule", "image_to_video/utils/shedule.py").beta_schedule("cosine", 1000)
    root = torch.cumprod(1 - betas, 0).sqrt()
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    abar_sq = root**2
    betas_zsnr = 1 - torch.cat([abar_sq[:1], abar_sq[1:] / abar_sq[:-1]])
    ref = torch.cumprod(1 - betas_zsnr, 0)
    ours = S.alphas_cumprod("cosine_zero_snr")
    assert (ours - ref).abs().max().item() <= TOL
    # facts from the reference brief
    assert abs(ours[1].item() - 0.99991) < 1e-5
    assert abs(ours[981].item() - 7.84e-4) < 1e-6
    assert ours[999].item() == 0.0
    assert torch.isinf(S.ve_sigmas(ours)[999])


def test_linear_sd_matches_modelscope_image2video():
    ref_module = _load("_ref_i2v_schedule", "image_to_video/utils/shedule.py")
    ref = torch.cumprod(1 - ref_module.beta_schedule("linear_sd", 1000, init_beta=0.00085, last_beta=0.0120), 0)
    assert (S.alphas_cumprod("linear_sd") - ref).abs().max().item() <= TOL


def test_logsnr_cosine_interp_zero_snr_matches_modelscope_vid2vid():
    ref_module = _load("_ref_v2v_schedules", "video_to_video/utils/schedules_sdedit.py")
    sigmas = ref_module.noise_schedule("logsnr_cosine_interp", n=1000, zero_terminal_snr=True, scale_min=2.0,
                                       scale_max=4.0).double()
    ours = S.alphas_cumprod("logsnr_cosine_interp_zero_snr")
    assert (ours - (1 - sigmas**2)).abs().max().item() <= TOL
    alpha, sigma_vp = S.vp_alpha_sigma(ours)
    # the brief quotes sigma_vp 0.972 and alpha 0.234 at t=599 (alpha is 0.23347, i.e. 0.234 rounded from 0.2335)
    assert sigma_vp[599].item() == pytest.approx(0.972, abs=5e-4)
    assert alpha[599].item() == pytest.approx(0.234, abs=1e-3)
    assert sigma_vp[999].item() == 1.0


def test_variant_schedules_and_conversions():
    assert S.VARIANT_SCHEDULES == {
        "i2vgen_xl": "cosine_zero_snr",
        "ms_image2video": "linear_sd",
        "ms_vid2vid_xl": "logsnr_cosine_interp_zero_snr",
    }
    with pytest.raises(TypeError):
        S.VARIANT_SCHEDULES["i2vgen_xl"] = "linear_sd"  # read-only mapping
    for variant, name in S.VARIANT_SCHEDULES.items():
        assert S.schedule_for_variant(variant) == name
        abar = S.alphas_cumprod(name)
        assert torch.all(abar[1:] < abar[:-1]) and 0 <= abar.min() and abar.max() < 1
        sig = S.ve_sigmas(abar)
        assert torch.allclose(1 / (sig[:-1] ** 2 + 1), abar[:-1], atol=1e-12)
        for t in (0.0, 17.0, 599.0, 598.25):
            assert S.sigma_to_timestep(abar, S.timestep_to_sigma(abar, t)) == pytest.approx(t, abs=1e-9)
    with pytest.raises(ValueError, match="expected one of"):
        S.alphas_cumprod("karras")
    with pytest.raises(ValueError, match="variant"):
        S.schedule_for_variant("sd15")
    assert math.isinf(S.timestep_to_sigma(S.alphas_cumprod("cosine_zero_snr"), 999))

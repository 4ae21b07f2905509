"""Samplers against their references: diffusers' DDIMScheduler (hub config), the ModelScope/VGen DDIM loop, and the
MS-Vid2Vid-XL SDEdit solvers (ModelScope ``video_to_video/utils``: ``solvers_sdedit.py`` has both
``sample_dpmpp_2m_sde`` and ``sample_heun`` in the pinned modelscope 1.40.2, so every comparison is against the
original code; ``torchsde`` is not installed, so its import is stubbed and the Brownian-tree noise sampler is replaced
by a replay of a seeded generator, which is the only part of the SDE solver that depends on it).
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch

from i2vgen_core.diffusion import samplers as K
from i2vgen_core.diffusion.schedules import alphas_cumprod

from helpers import HUB_SCHEDULER_CONFIG, modelscope_file

SHAPE = (2, 4, 3, 4, 5)  # B, C, F, h, w


# --------------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def v2v_ref():
    """ModelScope video_to_video/utils modules, loaded as a throw-away package (torchsde stubbed if missing)."""
    utils = modelscope_file("video_to_video/utils")
    pkg_name = "_ref_v2v_utils"
    modules = {}
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("torchsde") is None:
            mp.setitem(sys.modules, "torchsde", types.ModuleType("torchsde"))
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [str(utils)]
        mp.setitem(sys.modules, pkg_name, pkg)
        for name in ("schedules_sdedit", "solvers_sdedit", "diffusion_sdedit"):
            spec = importlib.util.spec_from_file_location(f"{pkg_name}.{name}", utils / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            mp.setitem(sys.modules, spec.name, module)
            spec.loader.exec_module(module)
            modules[name] = module
    return types.SimpleNamespace(**modules)


@pytest.fixture(scope="module")
def i2v_diffusion():
    """ModelScope image_to_video/utils/diffusion.py: the DDIM loop VGen's DiffusionDDIM also uses."""
    path = modelscope_file("image_to_video/utils/diffusion.py")
    spec = importlib.util.spec_from_file_location("_ref_i2v_diffusion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replay_sampler(seed: int):
    """Stand-in for BrownianTreeNoiseSampler: standard normals from a seeded CPU generator, in call order."""

    class Replay:
        def __init__(self, x, sigma_min, sigma_max, seed_=None, transform=None):
            self.like, self.gen = x, torch.Generator().manual_seed(seed)

        def __call__(self, sigma, sigma_next):
            return torch.randn(self.like.shape, generator=self.gen, dtype=self.like.dtype)

    return Replay


def _fields(dtype=torch.float64):
    """Start noise and two conditioning fields (cond / uncond) for the toy model."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(SHAPE, generator=g, dtype=dtype)
    cond = torch.randn(SHAPE, generator=g, dtype=dtype)
    uncond = torch.randn(SHAPE, generator=g, dtype=dtype)
    return noise, cond, uncond


def toy_v(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A deterministic, nonlinear stand-in v-model that depends on sample, timestep and conditioning."""
    tt = t.to(x.dtype).view(-1, *([1] * (x.ndim - 1))) / 1000.0
    return 0.7 * torch.tanh(x) + (0.1 + 0.3 * tt) * y + 0.05 * torch.cos(7 * tt)


class Recorder:
    """model_fn that records every input sample and forwards to ``toy_v`` with a fixed conditioning."""

    def __init__(self, y):
        self.y, self.inputs, self.timesteps = y, [], []

    def __call__(self, x, t):
        self.inputs.append(x.clone())
        self.timesteps.append(int(t[0]))
        return toy_v(x, t, self.y)


def _maxdiff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------------------------------
# guidance and v-parameterisation


def test_v_conversions_roundtrip():
    x0, eps = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    for a in (0.999, 0.3, 1e-3):
        xt = a**0.5 * x0 + (1 - a) ** 0.5 * eps
        v = K.v_from_x0_eps(x0, eps, a)
        assert torch.allclose(K.x0_from_v(xt, v, a), x0, atol=1e-12)
        assert torch.allclose(K.eps_from_v(xt, v, a), eps, atol=1e-12)


def test_cfg_rescale_matches_modelscope_denoise(v2v_ref):
    """Guidance rescale against GaussianDiffusion_SDEdit.denoise (prediction 'x0' returns the guided output)."""
    _, cond, uncond = _fields()
    diffusion = v2v_ref.diffusion_sdedit.GaussianDiffusion_SDEdit(
        sigmas=v2v_ref.schedules_sdedit.noise_schedule(zero_terminal_snr=True), prediction_type="x0")
    model = lambda xt, t, y: y  # noqa: E731
    t = torch.full((SHAPE[0],), 599, dtype=torch.long)
    for scale, rescale in ((7.5, 0.2), (9.0, 0.0), (3.0, 1.0)):
        ref = diffusion.denoise(cond, t, None, model, [{"y": cond}, {"y": uncond}], scale, rescale)[3]
        diff = (K.cfg_combine(uncond, cond, scale, rescale) - ref).abs().max().item()
        assert diff <= 1e-12, (scale, rescale, diff)
    with pytest.raises(ValueError, match="rescale"):
        K.cfg_combine(uncond, cond, 7.5, 1.5)


# --------------------------------------------------------------------------------------------------------------------
# DDIM


def test_ddim_timesteps_match_diffusers_and_vgen():
    from diffusers import DDIMScheduler

    assert K.ddim_timesteps(50).tolist() == list(range(981, 0, -20))
    vgen = (1 + torch.arange(0, 1000, 1000 // 50)).clamp(0, 999).flip(0)
    assert K.ddim_timesteps(50).tolist() == vgen.tolist()
    for spacing, offset in (("leading", 1), ("trailing", 0), ("linspace", 0)):
        sch = DDIMScheduler.from_config({**HUB_SCHEDULER_CONFIG, "timestep_spacing": spacing, "steps_offset": offset})
        for steps in (1, 7, 30, 50):
            sch.set_timesteps(steps)
            assert K.ddim_timesteps(steps, spacing=spacing, offset=offset).tolist() == sch.timesteps.tolist()
    with pytest.raises(ValueError, match="spacing"):
        K.ddim_timesteps(10, spacing="karras")


def _diffusers_ddim(model, noise, steps, eta, variance_noises, table=None):
    """Reference loop: diffusers DDIMScheduler from the hub config; returns (inputs, x0 predictions, final, table).

    ``table`` replaces the scheduler's float32 ``alphas_cumprod`` (diffusers then does its arithmetic in that dtype).
    """
    from diffusers import DDIMScheduler

    sch = DDIMScheduler.from_config(HUB_SCHEDULER_CONFIG)
    if table is not None:
        sch.alphas_cumprod = table
        sch.final_alpha_cumprod = torch.tensor(1.0, dtype=table.dtype)
    sch.set_timesteps(steps)
    x, inputs, x0s = noise.clone(), [], []
    for i, t in enumerate(sch.timesteps):
        inputs.append(x.clone())
        v = model(x, t.expand(x.shape[0]))
        out = sch.step(v, t, x, eta=eta, variance_noise=variance_noises[i] if eta else None)
        x0s.append(out.pred_original_sample)
        x = out.prev_sample
    return inputs, x0s, x, sch.alphas_cumprod


def _ours_ddim(noise, cond, abar, steps, eta, variance_noises):
    """Our DDIM with the diffusers convention; returns (inputs, x0 predictions, final)."""
    rec, x0s, replay = Recorder(cond), [], iter(variance_noises)
    final = K.sample_ddim(rec, noise.clone(), abar, K.ddim_timesteps(steps), eta=eta, final_alpha="one",
                          noise_sampler=lambda *_: next(replay), callback=lambda i, n, x0: x0s.append(x0))
    assert final.dtype == noise.dtype and rec.timesteps == K.ddim_timesteps(steps).tolist()
    return rec.inputs, x0s, final


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_matches_diffusers_step_for_step(dtype, tol, eta):
    """Same model, same noise, same alphas_cumprod table: every intermediate sample, every x0 prediction and the
    result agree (50 steps, hub scheduler config). In float64 the scheduler gets our float64 table (diffusers would
    otherwise do its coefficient arithmetic in float32); in float32 both use diffusers' own float32 table."""
    steps = 50
    noise, cond, _ = _fields(dtype)
    g = torch.Generator().manual_seed(1)
    variance_noises = [torch.randn(SHAPE, generator=g, dtype=dtype) for _ in range(steps)]
    model = lambda x, t: toy_v(x, t, cond)  # noqa: E731
    table = alphas_cumprod("cosine_zero_snr") if dtype == torch.float64 else None
    ref_inputs, ref_x0s, ref_final, ref_table = _diffusers_ddim(model, noise, steps, eta, variance_noises, table)
    inputs, x0s, final = _ours_ddim(noise, cond, ref_table.double(), steps, eta, variance_noises)
    diffs = (_maxdiff(inputs, ref_inputs), _maxdiff(x0s, ref_x0s), (final - ref_final).abs().max().item())
    print(f"DDIM vs diffusers, {dtype} eta={eta}: max diffs inputs/x0/final = {diffs}")
    assert max(diffs) <= tol, diffs


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_with_own_schedule_matches_stock_diffusers(eta):
    """End to end against the unmodified hub scheduler: the only difference left is diffusers' float32 schedule
    table (<= 7.7e-7 from ours), amplified at eta > 0 by the 1 - abar_t/abar_prev cancellation near t = 1."""
    steps = 50
    noise, cond, _ = _fields(torch.float64)
    g = torch.Generator().manual_seed(1)
    variance_noises = [torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(steps)]
    ref_inputs, _, ref_final, _ = _diffusers_ddim(lambda x, t: toy_v(x, t, cond), noise, steps, eta, variance_noises)
    inputs, _, final = _ours_ddim(noise, cond, alphas_cumprod("cosine_zero_snr"), steps, eta, variance_noises)
    diffs = (_maxdiff(inputs, ref_inputs), (final - ref_final).abs().max().item())
    print(f"DDIM (own float64 schedule) vs stock diffusers, eta={eta}: max diffs inputs/final = {diffs}")
    assert max(diffs) <= 5e-5, diffs


@pytest.mark.parametrize("schedule", ["cosine_zero_snr", "linear_sd"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_cfg_matches_vgen_modelscope_loop(i2v_diffusion, schedule, eta):
    """final_alpha='first' against ModelScope's GaussianDiffusion.ddim_sample_loop (VGen's DDIM: same algorithm)."""
    noise, cond, uncond = _fields()
    abar = alphas_cumprod(schedule)
    betas = 1 - torch.cat([abar[:1], abar[1:] / abar[:-1]])
    ref_diffusion = i2v_diffusion.GaussianDiffusion(betas, mean_type="v", var_type="fixed_small")
    steps, scale = 10, 9.0

    torch.manual_seed(7)  # the reference draws its eta noise from the global RNG after each model call
    ref = ref_diffusion.ddim_sample_loop(noise.clone(), toy_v, [{"y": cond}, {"y": uncond}], guide_scale=scale,
                                         ddim_timesteps=steps, eta=eta)

    def guided(x, t):
        return K.cfg_combine(toy_v(x, t, uncond), toy_v(x, t, cond), scale)

    torch.manual_seed(7)
    ours = K.sample_ddim(guided, noise.clone(), abar, K.ddim_timesteps(steps), eta=eta,
                         noise_sampler=lambda *_: torch.randn_like(noise))
    diff = (ours - ref).abs().max().item()
    print(f"DDIM vs VGen/ModelScope loop {schedule} eta={eta}: max diff {diff:.3g}")
    assert diff <= 1e-6


@pytest.mark.parametrize("schedule", ["cosine_zero_snr", "linear_sd"])
@pytest.mark.parametrize("steps", [3, 7, 30, 50])
def test_ddim_follows_the_original_loop_at_any_step_count(i2v_diffusion, steps, schedule):
    """sample(method="ddim") visits the original loop's timesteps and targets for step counts that do not divide
    1000 too (30: 31 timesteps from 991; 3: 999, 667, 334, 1, where 999 moves to 666 as the original's clamp does).
    At t = 999 on I2VGen-XL's zero-terminal-SNR schedule the original divides by sqrt(1 - abar) / sqrt(abar) = inf
    and returns NaN; ours takes eps from v directly and stays finite."""
    noise, cond, uncond = _fields()
    abar = alphas_cumprod(schedule)
    betas = 1 - torch.cat([abar[:1], abar[1:] / abar[:-1]])
    ref_diffusion = i2v_diffusion.GaussianDiffusion(betas, mean_type="v", var_type="fixed_small")
    seen, ref_seen = [], []

    def recorded(into):
        def model(x, t, y):
            into.append(int(t[0]))
            return toy_v(x, t, y)
        return model

    ref = ref_diffusion.ddim_sample_loop(noise.clone(), recorded(ref_seen), [{"y": cond}, {"y": uncond}],
                                         guide_scale=9.0, ddim_timesteps=steps, eta=0.0)

    def guided(x, t):
        return K.cfg_combine(recorded(seen)(x, t, uncond), toy_v(x, t, cond), 9.0)

    ours = K.sample(guided, noise.clone(), abar, method="ddim", steps=steps)
    stride = 1000 // steps
    assert seen == ref_seen[::2] == (1 + torch.arange(0, 1000, stride)).clamp(0, 999).flip(0).tolist()
    diff = (ours - ref).abs().max().item()
    print(f"DDIM at {steps} steps ({len(seen)} timesteps from {seen[0]}), {schedule}, vs the original loop: "
          f"max diff {diff:.3g}")
    assert torch.isfinite(ours).all()
    if seen[0] == 999 and abar[999] == 0:
        assert torch.isnan(ref).all()
    else:
        assert diff <= 1e-6


def test_ddim_final_alpha_conventions_differ_only_in_last_step():
    noise, cond, _ = _fields()
    abar = alphas_cumprod("cosine_zero_snr")
    a = K.sample_ddim(Recorder(cond), noise, abar, [981, 481], final_alpha="first")
    b = K.sample_ddim(Recorder(cond), noise, abar, [981, 481], final_alpha="one")
    assert 0 < (a - b).abs().max().item() < 0.05
    with pytest.raises(ValueError, match="final_alpha"):
        K.sample_ddim(Recorder(cond), noise, abar, [981], final_alpha="zero")


def test_callback_exception_propagates_and_stops_sampling():
    noise, cond, _ = _fields()
    abar = alphas_cumprod("cosine_zero_snr")

    class Interrupted(Exception):
        pass

    def stop_at_2(step, total, x0):
        assert total == 50 and x0.shape == noise.shape
        if step == 2:
            raise Interrupted

    rec = Recorder(cond)
    with pytest.raises(Interrupted):
        K.sample_ddim(rec, noise, abar, K.ddim_timesteps(50), callback=stop_at_2)
    assert len(rec.inputs) == 3
    for method in ("dpmpp_2m_sde", "heun"):
        rec = Recorder(cond)
        with pytest.raises(Interrupted):
            K.sample(rec, noise, abar, method=method, steps=50, t_max=599, callback=stop_at_2,
                     generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------------------------------
# SDEdit and the MS-Vid2Vid-XL solvers


def test_noise_to_strength_matches_modelscope_diffuse(v2v_ref):
    x0, noise, _ = _fields()
    ref_sigmas = v2v_ref.schedules_sdedit.noise_schedule(zero_terminal_snr=True, scale_min=2.0, scale_max=4.0)
    ref = v2v_ref.diffusion_sdedit.GaussianDiffusion_SDEdit(ref_sigmas, "v").diffuse(
        x0, torch.full((SHAPE[0],), 599), noise)
    assert K.strength_to_timestep(0.6) == 599
    assert K.strength_to_timestep(1.0) == 998 and K.strength_to_timestep(0.001) == 0
    ours = K.noise_to_strength(x0, noise, 0.6, alphas_cumprod("logsnr_cosine_interp_zero_snr"))
    diff = (ours - ref).abs().max().item()
    print(f"SDEdit diffuse: max diff {diff:.3g}")
    assert diff <= 1e-6
    with pytest.raises(ValueError, match="strength"):
        K.strength_to_timestep(0.0)


@pytest.mark.parametrize("method", ["dpmpp_2m_sde", "dpmpp_2m_sde_heun", "heun"])
def test_solvers_match_modelscope_on_identical_sigmas(v2v_ref, method, monkeypatch):
    """Solver arithmetic alone: same sigmas, same denoiser, same SDE noise (float64, tolerance 1e-6)."""
    abar = alphas_cumprod("logsnr_cosine_interp_zero_snr")
    steps = 30 if method != "heun" else 50
    sigmas = K.sdedit_sigmas(abar, steps, 599, discard_penultimate=method != "heun")
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0
    noise, cond, _ = _fields()

    def ref_model(x_in, sigma):  # the reference passes x * c_in
        return torch.tanh(x_in) * 0.8 + 0.1 * float(sigma) * cond

    def denoiser(x, sigma):
        return ref_model(x / (sigma**2 + 1) ** 0.5, sigma)

    monkeypatch.setattr(v2v_ref.solvers_sdedit, "BrownianTreeNoiseSampler", _replay_sampler(3))
    x0s = []
    cb = lambda i, n, x0: x0s.append(x0)  # noqa: E731
    if method == "heun":
        ref = v2v_ref.solvers_sdedit.sample_heun(noise.clone(), ref_model, sigmas, show_progress=False)
        ours = K.sample_heun(denoiser, noise * float(sigmas[0]), sigmas, callback=cb)
    else:
        solver_type = "heun" if method.endswith("heun") else "midpoint"
        ref = v2v_ref.solvers_sdedit.sample_dpmpp_2m_sde(noise.clone(), ref_model, sigmas, solver_type=solver_type,
                                                         show_progress=False)
        ours = K.sample_dpmpp_2m_sde(denoiser, noise * float(sigmas[0]), sigmas, solver_type=solver_type,
                                     generator=torch.Generator().manual_seed(3), callback=cb)
    diff = (ours - ref).abs().max().item()
    print(f"{method} solver vs ModelScope: max diff {diff:.3g}")
    assert len(x0s) == steps and diff <= 1e-6


@pytest.mark.parametrize("method,steps", [("dpmpp_2m_sde", 30), ("heun", 50)])
def test_sdedit_sampling_matches_modelscope_gaussian_diffusion(v2v_ref, method, steps, monkeypatch):
    """Full MS-Vid2Vid-XL path: schedule, trailing discretisation from t=599, sigma->t rounding, v->x0, CFG 7.5
    with rescale 0.2 -- against GaussianDiffusion_SDEdit.sample. The reference computes its sigmas in float32, hence
    the 1e-5 tolerance; every x0 prediction is compared as well."""
    x0, noise, _ = _fields()
    _, cond, uncond = _fields()
    cond, uncond = cond * 0.5, uncond.flip(0)
    ref_sigmas = v2v_ref.schedules_sdedit.noise_schedule(zero_terminal_snr=True, scale_min=2.0, scale_max=4.0)
    diffusion = v2v_ref.diffusion_sdedit.GaussianDiffusion_SDEdit(ref_sigmas, "v")
    x_t = diffusion.diffuse(x0, torch.full((SHAPE[0],), 599), noise)
    monkeypatch.setattr(v2v_ref.solvers_sdedit, "BrownianTreeNoiseSampler", _replay_sampler(5))
    ref, ref_x0s = diffusion.sample(noise=x_t, model=toy_v, model_kwargs=[{"y": cond}, {"y": uncond}],
                                    guide_scale=7.5, guide_rescale=0.2, solver=method, steps=steps, t_max=599,
                                    t_min=0, discretization="trailing", return_intermediate="x0")

    abar = alphas_cumprod("logsnr_cosine_interp_zero_snr")
    ours_t = K.noise_to_strength(x0, noise, 0.6, abar)
    timesteps, x0s = [], []

    def guided(x, t):
        timesteps.append(int(t[0]))
        return K.cfg_combine(toy_v(x, t, uncond), toy_v(x, t, cond), 7.5, 0.2)

    ours = K.sample(guided, ours_t, abar, method=method, steps=steps, t_max=599,
                    generator=torch.Generator().manual_seed(5), callback=lambda i, n, x: x0s.append(x))
    first_evals = ref_x0s if method == "dpmpp_2m_sde" else ref_x0s[::2]
    assert timesteps[0] == 599 and len(x0s) == steps
    diffs = (_maxdiff(x0s, first_evals), (ours - ref).abs().max().item())
    print(f"{method} SDEdit vs GaussianDiffusion_SDEdit.sample: max diffs x0/final = {diffs}")
    assert max(diffs) <= 1e-5


def test_sample_dispatch_and_errors():
    noise, cond, _ = _fields()
    abar = alphas_cumprod("cosine_zero_snr")
    a = K.sample(Recorder(cond), noise, abar, method="ddim", steps=5)
    b = K.sample_ddim(Recorder(cond), noise, abar, K.ddim_timesteps(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="method"):
        K.sample(Recorder(cond), noise, abar, method="euler", steps=5)
    with pytest.raises(ValueError, match="inf"):
        K.sample_heun(lambda x, s: x, noise, torch.tensor([float("inf"), 1.0, 0.0]))


def test_sdedit_start_scale_is_the_vp_sigma():
    """MS-Vid2Vid-XL starts at x_t * sigma (VE), the exact start is x_t * sqrt(1 + sigma^2): ratio sqrt(1-abar)."""
    from i2vgen_core.diffusion.samplers import sdedit_start_scale
    from i2vgen_core.diffusion.schedules import alphas_cumprod, timestep_to_sigma

    abar = alphas_cumprod("logsnr_cosine_interp_zero_snr")
    sigma = timestep_to_sigma(abar, 599)
    assert sdedit_start_scale(sigma) == pytest.approx((1.0 - float(abar[599])) ** 0.5, rel=1e-12)
    assert sdedit_start_scale(sigma) == pytest.approx(0.972, abs=1e-3)


def test_start_offset_follows_modelscopes_build_noise():
    """MS-Image2Video's start: randn(noise) then 0.1 * randn(B, C, F, 1, 1), one generator; other variants: none."""
    from i2vgen_core.diffusion.samplers import START_OFFSET_NOISE, add_start_offset, start_offset_strength

    assert start_offset_strength("ms_image2video") == 0.1
    assert start_offset_strength("i2vgen_xl") == 0.0 and start_offset_strength("ms_vid2vid_xl") == 0.0
    assert set(START_OFFSET_NOISE) == {"i2vgen_xl", "ms_image2video", "ms_vid2vid_xl"}
    g = torch.Generator().manual_seed(666)
    noise = torch.randn(2, 4, 3, 5, 6, generator=g)
    out = add_start_offset(noise, 0.1, g)
    torch.manual_seed(666)  # ModelScope draws both from the global generator, one after the other
    ref = torch.randn(2, 4, 3, 5, 6)
    ref = ref + 0.1 * torch.randn(2, 4, 3, 1, 1)
    assert torch.equal(out, ref)
    assert add_start_offset(noise, 0.0, g) is noise
    with pytest.raises(ValueError, match="Unknown model variant"):
        start_offset_strength("sd15")


def test_end_at_first_timestep_is_the_original_last_ddim_step():
    """Ending at timestep 0's sigma and rescaling to VP gives the original's last DDIM step (to alphas_cumprod[0])."""
    from i2vgen_core.diffusion.samplers import end_at_first_timestep
    from i2vgen_core.diffusion.schedules import alphas_cumprod

    abar = alphas_cumprod("cosine_zero_snr")
    sigma = lambda t: float(((1 - abar[t]) / abar[t]) ** 0.5)  # noqa: E731 - VE sigma of timestep t
    sigmas = torch.tensor([sigma(21), sigma(1), 0.0])
    ended, scale = end_at_first_timestep(sigmas, sigma(0))
    assert ended.tolist() == pytest.approx([sigma(21), sigma(1), sigma(0)])
    assert scale == pytest.approx(float(abar[0]) ** 0.5)
    # a deterministic (Euler = DDIM) last step from t=1 in VE, rescaled, equals the VP DDIM step to abar[0]
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    x_ve = x0 + sigma(1) * eps
    last = (x0 + ended[-1] * (x_ve - x0) / sigma(1)) * scale
    ref = float(abar[0]) ** 0.5 * x0 + float(1 - abar[0]) ** 0.5 * eps
    assert torch.allclose(last, ref.float(), atol=1e-6)
    # a schedule already at timestep 0 before its final 0 drops the 0; one that does not end at 0 is kept
    kept, one = end_at_first_timestep(torch.tensor([1.0, 0.5]), sigma(0))
    assert kept.tolist() == [1.0, 0.5] and one == 1.0
    dropped, s = end_at_first_timestep(torch.tensor([1.0, sigma(0), 0.0]), sigma(0))
    assert dropped.tolist() == pytest.approx([1.0, sigma(0)]) and s == pytest.approx(float(abar[0]) ** 0.5)

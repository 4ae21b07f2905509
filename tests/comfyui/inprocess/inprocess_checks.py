"""Numerical checks of the ComfyUI integration, run inside ComfyUI's own Python (no server).

Usage: COMFYUI_PYTHON inprocess_checks.py COMFYUI_PATH REPO DEMO_DIR  -> one JSON object per check on stdout.
The package is imported the way ComfyUI imports custom nodes (by file location, as a package), so relative imports
and ComfyUI's top-level ``nodes`` module behave as in the server. Tiny random UNets only.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path

# the in-process harness (setup, tiny_patcher, conds) is shared with the benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from comfy_env import conds, setup, tiny_patcher  # noqa: E402,F401  (re-exported to the other check scripts)

CHECKS = []
DEMO_DIR = ""  # demo weights folder (argv[3]), ComfyUI models layout


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def schedules_match_comfyui_equivalents():
    """Our sigma tables equal ComfyUI's own cosine+zsnr (I2VGen-XL) and linear (MS-Image2Video) constructions."""
    import torch
    import comfy.model_sampling
    from i2vgen_pkg.i2vgen_core import tiny_config
    from i2vgen_pkg.nodes.comfy_model import I2VGenModelSampling, I2VGenXLConfig

    out = {}
    for variant in ("i2vgen_xl", "ms_image2video"):
        ours = I2VGenModelSampling(variant).sigmas

        class MS(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
            pass

        theirs = MS(I2VGenXLConfig(tiny_config(variant))).sigmas
        rel = ((ours - theirs).abs() / theirs).max().item()
        out[variant] = rel
        assert rel < 2e-3, f"{variant}: max relative sigma difference {rel}"
    vid = I2VGenModelSampling("ms_vid2vid_xl")
    alpha_599 = float(1.0 / math.sqrt(1.0 + float(vid.sigmas[599]) ** 2))
    assert abs(alpha_599 - 0.2335) < 2e-3, alpha_599
    assert torch.isfinite(vid.sigmas).all() and vid.zsnr
    out["vid2vid_alpha_599"] = alpha_599
    out["zsnr_sigma_max"] = float(vid.sigma_max)
    return out


@check
def ddim_uniform_gives_original_timesteps():
    """ddim + ddim_uniform visits the original loop's timesteps (VGen / ModelScope: 1 + arange(0, 1000, 1000 //
    steps)), then 0: 981, 961, ..., 1 at 50 steps, 31 timesteps from 991 at 30. Where 1000 // steps divides 999
    (3, 9, 27, 37, ... steps) the original also visits 999, clamped; ComfyUI does not (reported)."""
    import comfy.samplers
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import ddim_timesteps
    from i2vgen_pkg.nodes.comfy_model import I2VGenModelSampling

    ms = I2VGenModelSampling("i2vgen_xl")
    figures = {}
    for steps in (3, 7, 10, 25, 30, 50):
        sigmas = comfy.samplers.calculate_sigmas(ms, "ddim_uniform", steps)
        ts = [int(ms.timestep(s)) for s in sigmas[:-1]]
        original = ddim_timesteps(steps, spacing="original").tolist()
        assert float(sigmas[-1]) == 0.0, sigmas[-1]
        if original[0] == 999:
            assert ts == original[1:], (steps, ts, original)
            figures[steps] = {"comfyui": len(ts), "original": len(original), "original_only": [999]}
        else:
            assert ts == original, (steps, ts[:5], original[:5])
            figures[steps] = {"timesteps": len(ts), "first": ts[0]}
    assert figures[50] == {"timesteps": 50, "first": 981} and figures[30] == {"timesteps": 31, "first": 991}
    return figures


@check
def detail_encode_draws_from_the_vae_posterior():
    """I2VGen-XL Detail Encode, posterior 'sample' (the default, seed 8888): mean + std * noise from the VAE's own
    encoder and quant_conv, the noise from the seed (the same seed gives the same latent, another seed another);
    'mean' gives ComfyUI's VAE Encode; a VAE without a Gaussian posterior is refused with what to do."""
    import tempfile
    import torch
    import comfy.sd
    import comfy.utils
    from i2vgen_pkg.i2vgen_core.video import preprocess as pre
    from i2vgen_pkg.i2vgen_core.weights import demo
    from i2vgen_pkg.nodes.encode import I2VGenXLDetailEncode

    hub = next(f for f in demo.DEMO_FILES if f.kind == "vae_sd21")
    with tempfile.TemporaryDirectory() as tmp:
        demo.write_demo_file(Path(tmp), hub)
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(Path(tmp) / hub.folder / hub.name)))
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (1, 64, 96, 3), generator=g).float() / 255
    node = I2VGenXLDetailEncode()

    def encode(*args):
        return node.encode(vae, image, 96, 64, *args)[0]["samples"]

    mean, drawn, again, other, default = (encode("mean", 1), encode("sample", 1), encode("sample", 1),
                                          encode("sample", 2), encode())
    fsm = vae.first_stage_model
    with torch.no_grad():
        pixels = pre.cover_resize_box(image, 96, 64, quantize=True).movedim(-1, 1) * 2 - 1
        moments = fsm.quant_conv(fsm.encoder(pixels.to(vae.device, vae.vae_dtype))).float().cpu()
    ref_mean, logvar = moments.chunk(2, dim=1)
    ref = ref_mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.randn(
        ref_mean.shape, generator=torch.Generator().manual_seed(1))
    figures = {"sample_vs_reference": _rel(drawn, ref), "mean_vs_reference": _rel(mean, ref_mean),
               "mean_vs_vae_encode": _rel(mean, vae.encode(image)), "sample_vs_mean": _rel(drawn, mean),
               "seed_1_vs_seed_2": _rel(drawn, other)}
    assert torch.equal(drawn, again) and torch.equal(default, encode("sample", 8888)), figures
    assert figures["sample_vs_reference"] < 1e-5 and figures["mean_vs_reference"] < 1e-5, figures
    assert figures["mean_vs_vae_encode"] == 0.0 and figures["seed_1_vs_seed_2"] > 1e-3, figures

    class GaussianFree:  # a VAE whose model has no regulariser to read the posterior from
        first_stage_model = torch.nn.Identity()

        def encode(self, pixels):
            return torch.zeros(1, 4, 8, 12)

    try:
        I2VGenXLDetailEncode().encode(GaussianFree(), image, 96, 64, "sample", 1)
        refused = ""
    except ValueError as err:
        refused = str(err)
    assert "set posterior to 'mean'" in refused, refused
    figures["refusal"] = refused
    return figures


@check
def refine_sigmas_start_at_strength():
    """strength 0.6 -> first sigma at t = 599; dpmpp_2m_sde keeps `steps` steps after dropping the penultimate."""
    from i2vgen_pkg.nodes.sampling import refine_sigmas

    mp = tiny_patcher("ms_vid2vid_xl")
    ms = mp.get_model_object("model_sampling")
    out = {}
    for scheduler in ("simple", "normal", "karras", "beta"):
        s = refine_sigmas(mp, scheduler, 30, 0.6, "dpmpp_2m_sde")
        assert len(s) == 31 and float(s[-1]) == 0.0, (scheduler, len(s))
        t0 = int(ms.timestep(s[:1])[0])
        assert t0 == 599, (scheduler, t0)
        out[scheduler] = [round(float(x), 4) for x in s[:3]]
    s = refine_sigmas(mp, "simple", 30, 0.6, "euler")
    assert len(s) == 31 and abs(float(s[0]) - float(ms.sigmas[599])) < 1e-5
    return out


@check
def guidance_rescale_matches_original_formula():
    """The post-CFG function equals u + s(c - u) rescaled on v (core cfg_combine, = ModelScope diffusion_sdedit)."""
    import torch
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import cfg_combine
    from i2vgen_pkg.nodes.sampling import guidance_rescale_post_cfg

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 5, 6, generator=g) * 4
    sigma = torch.tensor([4.16, 0.7])
    s = sigma.view(-1, 1, 1, 1, 1)
    k = s * s + 1
    v_c, v_u = torch.randn(2, *x.shape, generator=g)
    den = lambda v: x / k - v * s / k.sqrt()  # noqa: E731  (ComfyUI's V_PREDICTION.calculate_denoised)
    scale, r = 7.5, 0.2
    cfg = den(v_u) + scale * (den(v_c) - den(v_u))
    args = {"denoised": cfg, "cond_denoised": den(v_c), "uncond_denoised": den(v_u), "input": x, "sigma": sigma,
            "cond_scale": scale}
    ours = guidance_rescale_post_cfg(r)(args)
    ref = den(cfg_combine(v_u, v_c, scale, r))
    err = (ours - ref).abs().max().item()
    assert err < 1e-4, err
    return {"max_abs_err": err}


@check
def comfy_ddim_equals_core_ddim():
    """ComfyUI's ddim sampler on our MODEL == the core's DDIM (eta 0, final alpha 1) with the same noise and CFG."""
    import torch
    import comfy.sample
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import sample_ddim
    from i2vgen_pkg.i2vgen_core.diffusion.schedules import alphas_cumprod

    mp = tiny_patcher("i2vgen_xl")
    unet = mp.model.diffusion_model
    h, w, f = 8, 8, 3
    pos, neg = conds(h, w)
    latent = torch.zeros(1, 4, f, h, w)
    noise = comfy.sample.prepare_noise(latent, 7)
    steps, scale = 5, 9.0
    out = comfy.sample.sample(mp, noise, steps, scale, "ddim", "ddim_uniform", pos, neg, latent, seed=7,
                              disable_pbar=True)
    out = out * 0.18215  # ComfyUI returns process_latent_out(x0)

    abar = alphas_cumprod("cosine_zero_snr")
    ts = list(range(1000 // steps * (steps - 1) + 1, 0, -(1000 // steps)))
    model_fn = _core_guided(unet, pos, neg, scale)
    x = (1.0 - float(abar[ts[0]])) ** 0.5 * noise
    ref = sample_ddim(model_fn, x, abar, ts, final_alpha="one")
    err = ((out - ref).abs().max() / ref.abs().max()).item()
    assert err < 2e-3, err
    return {"timesteps": ts, "max_rel_err": err}


def _core_guided(unet, pos, neg, scale: float, rescale: float = 0.0):
    """The core's CFG model function over the tiny I2VGen-XL UNet with the conditioning `conds` made (VP latents)."""
    import torch
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import cfg_combine
    from i2vgen_pkg.i2vgen_core.network.unet import I2VGenUNet

    lat = pos[0][1]["i2vgen_image_latent"] * 0.18215
    ck = dict(text=pos[0][0], image_embedding=pos[0][1]["i2vgen_image_embedding"], image_latent=lat,
              fps=torch.tensor([16]))
    uk = dict(ck, text=neg[0][0], image_embedding=torch.zeros(1, 1024))
    core_forward = I2VGenUNet.forward  # the network's own signature, bypassing ComfyUI's adapter

    def model_fn(x, t):
        with torch.no_grad():
            return cfg_combine(core_forward(unet, x, t, **uk), core_forward(unet, x, t, **ck), scale, rescale)

    return model_fn


def _rel(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@check
def pack_sampler_starts_from_plain_noise():
    """I2VGen-XL Sampler == the original DDIM loop from plain noise (VP x = noise at t0) for 10 and 50 steps, its last
    step to alphas_cumprod[0] as the original's (final_step 'original', the default) or to 1 ('clean'); KSampler keeps
    ComfyUI's start sqrt(1 - abar_t0) noise (what that changes is reported)."""
    import torch
    import comfy.sample
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import ddim_timesteps, sample_ddim
    from i2vgen_pkg.i2vgen_core.diffusion.schedules import alphas_cumprod
    from i2vgen_pkg.nodes.sampling import I2VGenXLSampler

    mp = tiny_patcher("i2vgen_xl")
    h, w, f, scale, seed = 8, 8, 2, 9.0, 8888
    pos, neg = conds(h, w)
    latent = torch.zeros(1, 4, f, h, w)
    noise = comfy.sample.prepare_noise(latent, seed)
    abar = alphas_cumprod("cosine_zero_snr")
    model_fn = _core_guided(mp.model.diffusion_model, pos, neg, scale)
    figures = {}
    for steps in (10, 50):
        (node,) = I2VGenXLSampler().sample(mp, pos, neg, {"samples": latent}, seed, steps, scale)
        node = node["samples"] * 0.18215  # ComfyUI returns process_latent_out(x)
        (clean,) = I2VGenXLSampler().sample(mp, pos, neg, {"samples": latent}, seed, steps, scale,
                                            final_step="clean")
        clean = clean["samples"] * 0.18215
        ksampler = comfy.sample.sample(mp, noise, steps, scale, "ddim", "ddim_uniform", pos, neg, latent, seed=seed,
                                       disable_pbar=True) * 0.18215
        ts = ddim_timesteps(steps)
        ref = sample_ddim(model_fn, noise.clone(), abar, ts, final_alpha="first")
        ref_clean = sample_ddim(model_fn, noise.clone(), abar, ts, final_alpha="one")
        figures[steps] = {"start_scale_ksampler": (1.0 - float(abar[int(ts[0])])) ** 0.5,
                          "node_vs_original": _rel(node, ref), "clean_vs_original_to_1": _rel(clean, ref_clean),
                          "last_step": _rel(clean, ref), "ksampler_vs_original_start": _rel(ksampler, ref_clean)}
    # fp32 VE arithmetic (ComfyUI) vs VP (core): the random tiny UNet at cfg 9 amplifies rounding over 50 steps
    assert all(f["node_vs_original"] < 5e-3 and f["clean_vs_original_to_1"] < 5e-3 for f in figures.values()), figures
    assert figures[10]["node_vs_original"] < 1e-4 and figures[10]["clean_vs_original_to_1"] < 1e-4, figures
    assert all(f["clean_vs_original_to_1"] < f["ksampler_vs_original_start"] / 3 for f in figures.values()), figures
    return figures


@check
def ms_image2video_sampler_starts_with_the_original_offset_noise():
    """I2VGen-XL Sampler on MS-Image2Video starts from ModelScope's ``build_noise``: the seed's noise plus 0.1 times
    one draw per (batch, channel, frame), drawn next from the same seeded generator (the pipeline's global RNG); on
    I2VGen-XL (VGen's entrance) from the seed's noise alone, ComfyUI's ``prepare_noise``."""
    import torch
    import comfy.sample
    from i2vgen_pkg.nodes.encode import I2VGenXLConditioning
    from i2vgen_pkg.nodes.sampling import I2VGenXLSampler

    seen = []
    sample_custom = comfy.sample.sample_custom

    def capture(model, noise, cfg, sampler, sigmas, positive, negative, latent_image, **kwargs):
        seen.append(noise.clone())
        return torch.zeros_like(latent_image)

    h, w, f, seed = 8, 8, 3, 666
    comfy.sample.sample_custom = capture
    try:
        ms_pos, ms_neg, latent = I2VGenXLConditioning().condition(
            w * 8, h * 8, f, 8, 1, clip_vision_output={"image_embeds": torch.randn(1, 1024)})["result"]
        I2VGenXLSampler().sample(tiny_patcher("ms_image2video"), ms_pos, ms_neg, latent, seed, 2, 3.0)
        pos, neg = conds(h, w)
        I2VGenXLSampler().sample(tiny_patcher("i2vgen_xl"), pos, neg, latent, seed, 2, 9.0)
    finally:
        comfy.sample.sample_custom = sample_custom
    torch.manual_seed(seed)  # ModelScope's build_noise after its global RNG is seeded
    plain = torch.randn(1, 4, f, h, w)
    original = plain + 0.1 * torch.randn(1, 4, f, 1, 1)
    figures = {"ms_image2video": (seen[0] - original).abs().max().item(),
               "i2vgen_xl": (seen[1] - plain).abs().max().item(),
               "offset_size": (original - plain).abs().max().item()}
    assert figures["ms_image2video"] == 0.0 and figures["i2vgen_xl"] == 0.0 and figures["offset_size"] > 0.01, figures
    return figures


@check
def refine_sampler_starts_like_ms_vid2vid_xl():
    """I2VGen-XL Refine Sampler (heun, no SDE noise) == the core's refine stage, which equals ModelScope's sampler:
    diffused to t = 599, started at sqrt(1 - abar) x ComfyUI's SDEdit start."""
    import torch
    import comfy.sample
    from i2vgen_pkg.i2vgen_core.diffusion.samplers import noise_to_strength, sample
    from i2vgen_pkg.i2vgen_core.diffusion.schedules import alphas_cumprod
    from i2vgen_pkg.nodes.sampling import I2VGenXLRefineSampler

    mp = tiny_patcher("i2vgen_xl")
    h, w, f, scale, rescale, steps, seed = 8, 8, 3, 7.5, 0.2, 6, 3
    pos, neg = conds(h, w)
    clean = torch.randn(1, 4, f, h, w, generator=torch.Generator().manual_seed(1))  # ComfyUI's (unscaled) latent
    noise = comfy.sample.prepare_noise(clean, seed)
    out = I2VGenXLRefineSampler().sample(mp, pos, neg, {"samples": clean}, seed, 0.6, steps, scale, rescale,
                                         "heun", "simple")["result"][0]["samples"] * 0.18215
    abar = alphas_cumprod("cosine_zero_snr")
    x_t = noise_to_strength(clean * 0.18215, noise, 0.6, abar)
    ref = sample(_core_guided(mp.model.diffusion_model, pos, neg, scale, rescale), x_t, abar, method="heun",
                 steps=steps, t_max=599)
    err = _rel(out, ref)
    assert err < 1e-4, err
    return {"max_rel_err": err}


@check
def text_encode_tokens_equal_open_clip():
    """I2VGen-XL Text Encode's ids (ComfyUI's own tokenizer files) == open_clip.tokenize (the original's), where
    CLIPTextEncode's differ: emphasis syntax, curly quotes, ligatures, full-width letters, HTML entities."""
    from types import SimpleNamespace
    from comfy.text_encoders.sd2_clip import SD2Tokenizer
    from i2vgen_pkg.i2vgen_core.text import open_clip_ids
    from i2vgen_pkg.nodes.encode import clip_bpe

    tokenizer = SD2Tokenizer()
    clip = SimpleNamespace(tokenizer=tokenizer, tokenize=tokenizer.tokenize_with_weights)
    texts = {"a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
             "cat (fluffy)": [49406, 2368, 263, 17054, 264, 49407],
             "he said \u201chi\u201d &amp; left": [49406, 797, 1946, 257, 1883, 257, 261, 1823, 49407],
             "\ufb01ne \uff21\uff22\uff23": [49406, 3797, 5334, 49407]}
    try:
        import open_clip
    except ImportError:
        open_clip = None
    comfy_differs = []
    for text, head in texts.items():
        ours = open_clip_ids(text, clip_bpe(clip))
        ref = open_clip.tokenize([text])[0].tolist() if open_clip else head + [0] * (77 - len(head))
        assert ours == ref, (text, ours[:12], ref[:12])
        comfy = [t for t, _ in tokenizer.tokenize_with_weights(text)["h"][0]]
        if comfy != ref:
            comfy_differs.append(text)
    return {"reference": "open_clip" if open_clip else "pinned ids", "clip_text_encode_differs_on": comfy_differs}


@check
def cond_and_uncond_are_batched_into_one_call():
    """ComfyUI concatenates our extra conds, so cond + uncond run as one batch of 2 through the UNet."""
    import torch
    import comfy.sample

    mp = tiny_patcher("i2vgen_xl")
    unet = mp.model.diffusion_model
    batches = []
    handle = unet.register_forward_pre_hook(lambda m, a, kw: batches.append(a[0].shape[0]), with_kwargs=True)
    pos, neg = conds(8, 8)
    latent = torch.zeros(1, 4, 2, 8, 8)
    comfy.sample.sample(mp, comfy.sample.prepare_noise(latent, 0), 2, 9.0, "euler", "normal", pos, neg, latent,
                        seed=0, disable_pbar=True)
    handle.remove()
    assert batches == [2, 2], batches
    return {"unet_batches": batches}


@check
def lora_keys_and_weight_patches_reach_the_unet():
    """State-dict keys are diffusion_model.<core names>; a ModelPatcher weight patch changes the output and unpatches."""
    import torch
    import comfy.lora
    import comfy.sample

    mp = tiny_patcher("ms_vid2vid_xl")
    keys = comfy.lora.model_lora_keys_unet(mp.model, {})
    target = "diffusion_model.input_blocks.1.0.in_layers.2.weight"
    assert target in mp.model.state_dict() and keys.get("diffusion_model.input_blocks.1.0.in_layers.2") == target
    pos = [[torch.randn(1, 77, 1024, generator=torch.Generator().manual_seed(1)), {}]]
    neg = [[torch.zeros(1, 77, 1024), {}]]
    latent = torch.zeros(1, 4, 2, 10, 8)

    def run(p):
        return comfy.sample.sample(p, comfy.sample.prepare_noise(latent, 0), 1, 7.5, "euler", "normal", pos, neg,
                                   latent, seed=0, disable_pbar=True)

    base = run(mp)
    patched = mp.clone()
    w = mp.model.state_dict()[target]
    patched.add_patches({target: (torch.randn_like(w) * 0.5,)}, 1.0)
    changed = run(patched)
    again = run(mp)
    d_patch = (changed - base).abs().max().item()
    d_again = (again - base).abs().max().item()
    assert d_patch > 1e-3 and d_again < 1e-5, (d_patch, d_again)
    return {"lora_keys": len(keys), "delta_patched": d_patch, "delta_unpatched": d_again}


@check
def fp8_storage_computes_like_fp8_rounded_weights():
    """fp8_e4m3fn storage + manual cast (fp32 compute on CPU) == fp32 compute on fp8-rounded weights."""
    import torch

    full = tiny_patcher("i2vgen_xl", seed=3)
    fp8 = tiny_patcher("i2vgen_xl", weight_dtype=torch.float8_e4m3fn, manual_cast=torch.float32, seed=3)
    rounded = tiny_patcher("i2vgen_xl", seed=3)
    with torch.no_grad():
        for p in rounded.model.diffusion_model.parameters():
            p.copy_(p.to(torch.float8_e4m3fn).float())
    assert fp8.model.diffusion_model.out[2].weight.dtype == torch.float8_e4m3fn
    pos, _ = conds(8, 8)
    x = torch.randn(1, 4, 2, 8, 8)
    sigma = torch.tensor([2.0])
    outs = []
    for mp in (fp8, rounded, full):
        c = mp.model.extra_conds(noise=x, device=torch.device("cpu"), cross_attn=pos[0][0], **pos[0][1])
        kw = {k: v.cond for k, v in c.items()}
        with torch.no_grad():
            outs.append(mp.model.apply_model(x, sigma, c_crossattn=kw.pop("c_crossattn"), **kw))
    same = ((outs[0] - outs[1]).norm() / outs[1].norm()).item()
    vs_fp32 = ((outs[0] - outs[2]).norm() / outs[2].norm()).item()
    assert same < 1e-4, same
    return {"rel_err_vs_rounded_fp32": same, "rel_err_vs_fp32_random_weights": vs_fp32}


@check
def loader_builds_from_comfy_ops_and_reports_bad_choices():
    """The loader node builds the UNet from comfy.ops layers (fp16 storage, fp32 compute on CPU) and says clearly
    when an attention backend cannot run."""
    import torch
    import comfy.sample
    import folder_paths
    from i2vgen_pkg.nodes.loader import I2VGenXLModelLoader

    folder_paths.add_model_folder_path("diffusion_models", f"{DEMO_DIR}/diffusion_models")
    node = I2VGenXLModelLoader()
    assert "i2vgen_xl.fp16.safetensors" in I2VGenXLModelLoader.INPUT_TYPES()["required"]["unet_name"][0]
    (mp,) = node.load("i2vgen_xl.fp16.safetensors", "fp16", "auto")
    unet = mp.model.diffusion_model
    layers = [m for m in unet.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm))]
    foreign = sorted({type(m).__module__ for m in layers} - {"comfy.ops"})
    assert not foreign, f"layers not from comfy.ops: {foreign}"
    assert unet.weight_dtype == torch.float16 and mp.model.manual_cast_dtype == torch.float32
    pos, neg = conds(8, 8)
    latent = torch.zeros(1, 4, 2, 8, 8)
    out = comfy.sample.sample(mp, comfy.sample.prepare_noise(latent, 0), 1, 9.0, "ddim", "ddim_uniform", pos, neg,
                              latent, seed=0, disable_pbar=True)
    assert torch.isfinite(out).all()
    try:
        node.load("i2vgen_xl.fp16.safetensors", "auto", "xformers")
        raise AssertionError("xformers on a CPU-only ComfyUI should be refused")
    except ValueError as err:
        message = str(err)
    assert "xformers" in message and "sdpa" in message, message
    return {"weights": str(unet.weight_dtype), "compute": str(mp.model.manual_cast_dtype),
            "xformers_message": message}


@check
def loader_loads_linked_files_and_names_broken_ones():
    """A listed file that links elsewhere (e.g. into a Hugging Face cache) loads, as with ComfyUI's own loaders;
    broken files are reported naming the file and what to do."""
    import os
    import tempfile
    import folder_paths
    from i2vgen_pkg.nodes.loader import I2VGenXLModelLoader

    folder_paths.add_model_folder_path("diffusion_models", f"{DEMO_DIR}/diffusion_models")
    outside = tempfile.mkdtemp()
    target = os.path.join(outside, "elsewhere.safetensors")
    with open(f"{DEMO_DIR}/diffusion_models/i2vgen_xl.fp16.safetensors", "rb") as src, open(target, "wb") as dst:
        dst.write(src.read())
    link = f"{DEMO_DIR}/diffusion_models/linked_out.safetensors"
    os.symlink(target, link)
    broken = f"{DEMO_DIR}/diffusion_models/broken.safetensors"
    with open(broken, "wb") as f:
        f.write((2 ** 40).to_bytes(8, "little") + b"{}")
    messages = {}
    try:
        (mp,) = I2VGenXLModelLoader().load("linked_out.safetensors", "fp16", "auto")
        messages["linked_out.safetensors"] = f"loaded as {mp.model.i2vgen_variant}"
        for name, words in (("broken.safetensors", "download it again"),):
            try:
                I2VGenXLModelLoader().load(name, "fp16", "auto")
                raise AssertionError(f"{name} should be refused")
            except ValueError as err:
                messages[name] = str(err)
            assert words in messages[name] and name in messages[name], messages[name]
    finally:
        os.remove(link)
        os.remove(broken)
    return messages


@check
def memory_manager_loads_and_frees_the_model():
    """comfy.model_management can load, account for and unload our MODEL."""
    import comfy.model_management as mm

    mp = tiny_patcher("ms_image2video")
    mm.load_models_gpu([mp])
    size = mp.model_size()
    loaded = any(m.model is mp for m in mm.current_loaded_models)
    mm.unload_all_models()
    assert size > 1_000_000 and loaded, (size, loaded)
    return {"model_size_bytes": size}


@check
def every_video_node_rejects_image_latents():
    """One video-latent check: Video Decode, Latent Upscale and both samplers refuse a 4-D image latent alike."""
    import torch
    from i2vgen_pkg.nodes.latent import I2VGenXLLatentUpscale
    from i2vgen_pkg.nodes.sampling import I2VGenXLRefineSampler, I2VGenXLSampler
    from i2vgen_pkg.nodes.video import I2VGenXLVideoDecode

    image_latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = conds(8, 8)
    calls = {
        "decode": lambda: I2VGenXLVideoDecode().decode(None, image_latent, 2, False, 512, False, 8.0),
        "upscale": lambda: I2VGenXLLatentUpscale().upscale(image_latent, 64, 64, "latent", 0, "repeat", False),
        "sampler": lambda: I2VGenXLSampler().sample(tiny_patcher("i2vgen_xl"), pos, neg, image_latent, 0, steps=1),
        "refine": lambda: I2VGenXLRefineSampler().sample(tiny_patcher("i2vgen_xl"), pos, neg, image_latent, 0,
                                                         steps=1),
    }
    messages = {}
    for name, call in calls.items():
        try:
            call()
        except ValueError as err:
            messages[name] = str(err)
        else:
            raise AssertionError(f"{name} accepted a 4-D image latent")
    assert all("expected a video latent [batch, 4, frames, height/8, width/8]" in m and "no frame axis" in m
               for m in messages.values()), messages
    return messages


@check
def memory_estimate_follows_the_device():
    """On a --cpu server the estimate is of CPU RAM with what ComfyUI runs there (fp32 weights, activations and VAE)
    and fp8 weights; the refine sampler's estimate uses the loaded model's dtype and size."""
    import torch
    from i2vgen_pkg.i2vgen_core import memory as M
    from i2vgen_pkg.nodes.memory_ui import check_run, default_dtypes, model_settings

    assert default_dtypes("i2vgen_xl") == [("fp32", None), ("fp8", "fp32")], default_dtypes("i2vgen_xl")
    lines = check_run("I2VGen-XL Conditioning", variant="i2vgen_xl", width=1280, height=704, frames=16, batch=1)
    fp32 = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1, weight_dtype="fp32", vae_dtype="fp32", gpu=False)
    fp8 = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1, weight_dtype="fp8", compute_dtype="fp32",
                         vae_dtype="fp32", gpu=False)
    assert lines[0].startswith(f"Estimated peak memory with fp32 weights on the CPU (RAM): {M.gib(fp32.peak)}"), lines
    fp8_line = next(line for line in lines if line.startswith("Estimated peak memory with fp8 weights"))
    assert f": {M.gib(fp8.peak)} " in fp8_line, (fp8_line, fp8.to_dict())
    settings = model_settings(tiny_patcher("ms_vid2vid_xl", weight_dtype=torch.float16, manual_cast=torch.float32))
    assert (settings["weight_dtype"], settings["compute_dtype"]) == ("fp16", "fp32"), settings
    fp8 = model_settings(tiny_patcher("ms_vid2vid_xl", weight_dtype=torch.float8_e4m3fn))
    assert (fp8["weight_dtype"], fp8["compute_dtype"]) == ("fp8", None), fp8  # activations stay fp16/bf16
    refine = check_run("I2VGen-XL Refine Sampler", width=1280, height=720, frames=32, batch=1, **settings)
    assert refine[0].startswith("Estimated peak memory on the CPU (RAM): "), refine
    return {"conditioning": lines, "refine": refine}


def run_checks(checks, only=None, skip_reason=None) -> None:
    """Run each check (all, or those named in `only`), printing one JSON object per check; a failing check is
    reported and the next one runs. `skip_reason(fn)` may return why a check is skipped (reported as ok)."""
    for fn in checks:
        if only and fn.__name__ not in only:
            continue
        reason = skip_reason(fn) if skip_reason else None
        if reason:
            print(json.dumps({"name": fn.__name__, "ok": True, "skip": reason, "detail": None}), flush=True)
            continue
        try:
            detail = fn()
            print(json.dumps({"name": fn.__name__, "ok": True, "detail": detail}), flush=True)
        except Exception as err:  # report and go on
            print(json.dumps({"name": fn.__name__, "ok": False,
                              "detail": f"{type(err).__name__}: {err}\n{traceback.format_exc()[-3000:]}"}),
                  flush=True)


def selected(argv: list[str], index: int) -> set[str] | None:
    """The comma-separated check names in argv[index], or None (run them all)."""
    return set(argv[index].split(",")) if len(argv) > index and argv[index] else None


def main() -> int:
    global DEMO_DIR
    comfy_root, repo, DEMO_DIR = sys.argv[1], sys.argv[2], sys.argv[3]
    setup(comfy_root, repo)
    run_checks(CHECKS, selected(sys.argv, 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())

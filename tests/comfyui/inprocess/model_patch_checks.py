"""ComfyUI's own model-patching nodes on the pack's MODEL, run inside ComfyUI's Python (no server).

Usage: COMFYUI_PYTHON model_patch_checks.py COMFYUI_PATH REPO DEMO_DIR -> one JSON object per check on stdout.
Each check patches a tiny random I2VGen-XL MODEL with a stock node (called the way the node's own code is, from
``comfy_extras``), samples a few DDIM steps at a fixed seed with ``comfy.sample.sample`` (what KSampler runs) and
compares with the unpatched run.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inprocess_checks as base  # noqa: E402  (setup, tiny_patcher, conds)

CHECKS = []
FRAMES, SIZE, STEPS = 4, 16, 4  # 16x16 latents: the middle block keeps 2x2 tokens (attention is not trivial)


def check(fn):
    CHECKS.append(fn)
    return fn


def sample(mp, steps: int = STEPS, frames: int = FRAMES, seed: int = 0):
    """comfy.sample.sample (KSampler's path) on a tiny I2VGen-XL model; returns the latent."""
    import torch
    import comfy.sample

    pos, neg = base.conds(SIZE, SIZE, seed=7)
    latent = torch.zeros(1, 4, frames, SIZE, SIZE)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(mp, noise, steps, 9.0, "ddim", "ddim_uniform", pos, neg, latent, seed=seed,
                               disable_pbar=True)


_CACHE = {}


def reference():
    """(model patcher, unpatched latent), shared by the checks."""
    if "ref" not in _CACHE:
        mp = base.tiny_patcher("i2vgen_xl", seed=5)
        _CACHE["ref"] = (mp, sample(mp))
    return _CACHE["ref"]


def node_output(out):
    """The MODEL a node returned (classic tuple or V3 NodeOutput)."""
    return out.args[0] if hasattr(out, "args") else out[0]


def changed(patched_latent, ref_latent) -> float:
    import torch

    assert torch.isfinite(patched_latent).all(), "patched run produced non-finite values"
    return (patched_latent - ref_latent).abs().max().item()


@check
def unpatched_comfy_path_equals_core_forward():
    """No patch: ComfyUI's apply_model path runs the core network's exact kernels (bit for bit on CPU)."""
    import torch

    mp, _ = reference()
    unet = mp.model.diffusion_model
    pos, _ = base.conds(SIZE, SIZE, seed=7)
    x = torch.randn(1, 4, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    c = mp.model.extra_conds(noise=x, device=torch.device("cpu"), cross_attn=pos[0][0], **pos[0][1])
    kw = {k: v.cond for k, v in c.items()}
    t = torch.tensor([500.0])
    with torch.no_grad():
        ours = unet(x, t, context=kw["c_crossattn"], transformer_options={}, image_embedding=kw["image_embedding"],
                    image_latent=kw["image_latent"], fps=kw["fps"])
        core = type(unet).__mro__[1].forward(unet, x, t, text=kw["c_crossattn"],
                                             image_embedding=kw["image_embedding"],
                                             image_latent=kw["image_latent"], fps=kw["fps"])
    assert torch.equal(ours, core), (ours - core).abs().max().item()
    return {"max_abs_diff": 0.0}


@check
def freeu_and_freeu_v2_take_effect():
    from comfy_extras.nodes_freelunch import FreeU, FreeU_V2

    mp, ref = reference()
    out = {}
    for cls in (FreeU, FreeU_V2):
        patched = node_output(cls().patch(mp, b1=1.3, b2=1.4, s1=0.9, s2=0.2))
        out[cls.__name__] = changed(sample(patched), ref)
        assert out[cls.__name__] > 1e-4, out
    assert mp.model.model_config.unet_config["model_channels"] == 32
    return out


@check
def perturbed_attention_guidance_takes_effect():
    from comfy_extras.nodes_pag import PerturbedAttentionGuidance

    mp, ref = reference()
    d = changed(sample(node_output(PerturbedAttentionGuidance.execute(mp, 3.0))), ref)
    assert d > 1e-4, d
    return {"max_abs_change": d}


@check
def tome_and_hypertile_take_effect():
    from comfy_extras.nodes_hypertile import HyperTile
    from comfy_extras.nodes_tomesd import TomePatchModel

    mp, ref = reference()
    tome = changed(sample(node_output(TomePatchModel.execute(mp, 0.5))), ref)
    tile = changed(sample(node_output(HyperTile.execute(mp, 64, 1, 0, False))), ref)
    assert tome > 1e-4 and tile > 1e-4, (tome, tile)
    return {"tome": tome, "hypertile": tile}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@check
def easycache_skips_steps_and_lazycache_works():
    from comfy_extras.nodes_easycache import EasyCacheNode, LazyCacheNode

    mp, _ = reference()
    steps = 12
    ref = sample(mp, steps=steps)
    records = _Records()
    logging.getLogger().addHandler(records)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        easy = sample(node_output(EasyCacheNode.execute(mp, 3.0, 0.0, 1.0, True)), steps=steps)
        lazy = sample(node_output(LazyCacheNode.execute(mp, 3.0, 0.0, 1.0, True)), steps=steps)
    finally:
        logging.getLogger().removeHandler(records)
        logging.getLogger().setLevel(level)
    skipped = sum("EasyCache [verbose] - skipping step" in m for m in records.messages)
    lazy_skipped = sum("LazyCache [verbose] - skipping step" in m for m in records.messages)
    d_easy, d_lazy = changed(easy, ref), changed(lazy, ref)
    assert skipped > 0, f"EasyCache skipped no step; log: {records.messages[-5:]}"
    assert d_easy > 1e-5 and d_lazy > 1e-5, (d_easy, d_lazy)
    return {"easycache_skipped_steps": skipped, "lazycache_skipped_steps": lazy_skipped, "steps": steps,
            "easycache_change": d_easy, "lazycache_change": d_lazy}


@check
def context_windows_on_frames_work_for_every_variant():
    """ContextWindowsManual, dim 2 (frames), 4-frame windows over 8 frames; the I2VGen-XL image anchors only the
    window that starts at frame 0."""
    import torch
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode

    mp, _ = reference()
    seen = []
    unet = mp.model.diffusion_model
    original = unet._image_branch

    def spy(image_latent, frames, anchor=True):
        seen.append(anchor)
        return original(image_latent, frames, anchor)

    unet._image_branch = spy
    try:
        ref = sample(mp, frames=8)
        seen.clear()
        windowed = node_output(ContextWindowsManualNode.execute(mp, 4, 1, "standard_static", 1, False, "pyramid", 2))
        out = sample(windowed, frames=8)
    finally:
        del unet._image_branch
    d = changed(out, ref)
    assert d > 1e-4, d
    assert True in seen and False in seen, seen[:8]
    vid = base.tiny_patcher("ms_vid2vid_xl", seed=2)
    pos = [[torch.randn(1, 77, 1024, generator=torch.Generator().manual_seed(3)), {}]]
    neg = [[torch.zeros(1, 77, 1024), {}]]
    import comfy.sample

    latent = torch.randn(1, 4, 12, 10, 16, generator=torch.Generator().manual_seed(4))  # 80x128 px
    noise = comfy.sample.prepare_noise(latent, 0)
    plain = comfy.sample.sample(vid, noise, 3, 7.5, "euler", "simple", pos, neg, latent, seed=0, disable_pbar=True,
                                denoise=0.6)
    win = node_output(ContextWindowsManualNode.execute(vid, 4, 2, "standard_static", 1, False, "pyramid", 2))
    refined = comfy.sample.sample(win, noise, 3, 7.5, "euler", "simple", pos, neg, latent, seed=0,
                                  disable_pbar=True, denoise=0.6)
    d_vid = changed(refined, plain)
    assert refined.shape == plain.shape and d_vid > 1e-5
    return {"i2vgen_change": d, "windows_with_anchor": seen.count(True), "windows_without_anchor": seen.count(False),
            "vid2vid_12_frames_change": d_vid}


@check
def attention_goes_through_comfyui_selection_and_overrides():
    """auto: ComfyUI's optimized_attention (sage/flash/xformers/pytorch per its flags) is called for every attention;
    its split / sub-quadratic choices stay within fp32 tolerance of SDPA; an optimized_attention_override in the
    model's transformer_options is honoured; an explicit backend bypasses ComfyUI."""
    import comfy.ldm.modules.attention as ca
    from comfy.cli_args import args

    mp, ref = reference()
    calls = {"n": 0}
    original = ca.optimized_attention

    def counting(q, k, v, heads, **kw):
        calls["n"] += 1
        return ca.attention_pytorch(q, k, v, heads, **kw)

    counting.__name__ = "attention_counting"
    out = {}
    try:
        ca.optimized_attention = counting
        same = sample(mp)
        out["calls_through_optimized_attention"] = calls["n"]
        out["selected_vs_default"] = changed(same, ref)
        for name, fn, flag in (("sub_quad", ca.attention_sub_quad, "use_quad_cross_attention"),
                               ("split", ca.attention_split, "use_split_cross_attention")):
            setattr(args, flag, True)
            ca.optimized_attention = fn
            try:
                out[name] = changed(sample(mp), ref)
            finally:
                setattr(args, flag, False)
            assert out[name] < 1e-3, out
    finally:
        ca.optimized_attention = original
    assert calls["n"] > 0 and out["selected_vs_default"] < 1e-5, out
    overrides = {"n": 0}

    def override(func, *a, **kw):
        overrides["n"] += 1
        return func(*a, **kw)

    patched = mp.clone()
    patched.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    sample(patched)
    assert overrides["n"] > 0
    out["override_calls"] = overrides["n"]
    explicit = base.tiny_patcher("i2vgen_xl", seed=5)
    explicit.model.diffusion_model.set_attention_backend("sdpa")
    calls["n"] = 0
    ca.optimized_attention = counting
    try:
        d = changed(sample(explicit), ref)
    finally:
        ca.optimized_attention = original
    assert calls["n"] == 0 and d < 1e-5, (calls, d)
    out["explicit_sdpa_vs_auto"] = d
    return out


@check
def self_attention_guidance_is_refused_with_a_sentence():
    from comfy_extras.nodes_sag import SelfAttentionGuidance

    mp, _ = reference()
    patched = node_output(SelfAttentionGuidance.execute(mp, 0.5, 2.0))
    try:
        sample(patched)
    except ValueError as err:
        message = str(err)
    else:
        raise AssertionError("SelfAttentionGuidance ran on a video latent without an error")
    assert "SelfAttentionGuidance" in message and "remove" in message, message
    return {"message": message}


def model_conds(h: int):
    """The conds I2VGenXLModel.extra_conds makes for an I2VGen-XL run (random values, real shapes)."""
    import torch
    import comfy.conds

    g = torch.Generator().manual_seed(0)
    return {"c_crossattn": comfy.conds.CONDCrossAttn(torch.randn(1, 77, 1024, generator=g)),
            "image_embedding": comfy.conds.CONDRegular(torch.randn(1, 1024, generator=g)),
            "image_latent": comfy.conds.CONDRegular(torch.randn(1, 4, h, h, generator=g)),
            "fps": comfy.conds.CONDRegular(torch.tensor([16]))}


@check
def conds_stay_whole_in_every_context_window():
    """Newer cores ask BaseModel.resize_cond_for_context_window first and otherwise slice a cond whose size on the
    frame axis equals the frame count; 0.3.64 slices by its own rule. Both must leave every cond of the pack's model
    whole, including where the shapes collide (1024 frames = the text's 1024 features; 16 frames = a 16-high image
    latent)."""
    import torch
    import comfy.context_windows as cw
    from i2vgen_pkg.nodes.comfy_model import WHOLE_IN_EVERY_WINDOW

    model = base.tiny_patcher("i2vgen_xl").model
    collisions = {}
    for frames in (16, 1024):
        conds = model_conds(h=16)
        x_in = torch.zeros(1, 4, frames, 2, 2)
        window = cw.IndexListContextWindow(list(range(4)), dim=2)
        collisions[frames] = sorted(k for k, v in conds.items() if v.cond.ndim > 2 and v.cond.size(2) == frames)
        assert set(conds) == set(WHOLE_IN_EVERY_WINDOW), sorted(conds)
        for key, value in conds.items():  # the newer cores' path: the model's hook first
            out = model.resize_cond_for_context_window(key, value, window, x_in, "cpu", retain_index_list=[])
            assert out is not None and torch.equal(out.cond, value.cond), (frames, key)
        handler = cw.IndexListContextHandler(cw.get_matching_context_schedule("standard_static"),
                                             cw.get_matching_fuse_method("pyramid"), context_length=4, dim=2)
        resized = handler.get_resized_cond([{"model_conds": dict(conds)}], x_in, window)[0]["model_conds"]
        for key, value in conds.items():  # the installed core's own rule
            assert torch.equal(resized[key].cond, value.cond), (frames, key)
    assert collisions == {16: ["image_latent"], 1024: ["c_crossattn"]}, collisions
    return {"shape_collisions_by_frames": collisions}


@check
def loader_gives_newer_cores_a_way_to_reload_the_model():
    """Cores after 0.3.64 rebuild a MODEL from ``ModelPatcher.cached_patcher_init`` for multi-GPU and deep clones,
    calling it as ``factory(*args)`` or ``factory(*args, disable_dynamic=True)``: both give a fresh model with the
    same weights, variant and dtypes."""
    import torch
    import folder_paths
    from i2vgen_pkg.nodes.loader import I2VGenXLModelLoader

    folder_paths.add_model_folder_path("diffusion_models", f"{base.DEMO_DIR}/diffusion_models")
    (mp,) = I2VGenXLModelLoader().load("i2vgen_xl.fp16.safetensors", "fp16", "auto")
    factory, args = mp.cached_patcher_init
    weights = mp.model.state_dict()
    for again in (factory(*args), factory(*args, disable_dynamic=True)):
        assert again.model is not mp.model and again.model.diffusion_model is not mp.model.diffusion_model
        fresh = again.model.state_dict()
        assert fresh.keys() == weights.keys() and all(torch.equal(fresh[k], weights[k]) for k in weights)
        assert (again.model.i2vgen_variant, again.model.manual_cast_dtype, again.model_dtype()) == \
            (mp.model.i2vgen_variant, mp.model.manual_cast_dtype, mp.model_dtype())
    return {"factory": factory.__name__, "args": [str(a) for a in args]}


def main() -> int:
    base.DEMO_DIR = sys.argv[3]
    base.setup(sys.argv[1], sys.argv[2])
    base.run_checks(CHECKS, base.selected(sys.argv, 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Long videos in a real ComfyUI server on the demo weights: I2VGenXLExtend chained (both hand-offs, colour matching
on and off) makes F + k(F - 1) frames; the refine sampler's context windows run a video longer than the window, one
window equals no windows exactly, and ComfyUI's own ContextWindowsManual works on the pack's MODEL too."""

from __future__ import annotations

import pytest

from test_server_graphs import (FRAMES, H, REFINE_H, REFINE_W, W, Graph, assert_success, base_sampler,  # noqa: F401
                                conditioning, decode_and_save, encoders, loader, saved_video)

pytestmark = pytest.mark.comfyui


def extend(g: Graph, n: dict, model: str, previous: str, *, seed: int, length: int = FRAMES,
           color_match: str = "mean_std", handoff: str = "latent") -> str:
    return g.node("I2VGenXLExtend", samples=g.out(previous), clip_vision=g.out(n["clip_vision"]),
                  vae=g.out(n["vae"]), model=g.out(model), positive=g.out(n["pos"]), negative=g.out(n["neg"]),
                  seed=seed, steps=2, cfg=9.0, sampler_name="ddim", scheduler="ddim_uniform", length=length, fps=16,
                  color_match=color_match, handoff=handoff, square_size=224)


def test_extend_chain_makes_f_plus_k_times_f_minus_1_frames(comfy_server):
    g = Graph()
    n = encoders(g)
    model = loader(g, "i2vgen_xl")
    video = base_sampler(g, model, conditioning(g, n), steps=2)
    video = extend(g, n, model, video, seed=1, handoff="latent", color_match="mean_std")
    video = extend(g, n, model, video, seed=2, handoff="pixels", color_match="off")
    video = extend(g, n, model, video, seed=3, handoff="latent", color_match="mean", length=3)
    save = decode_and_save(g, n, video, prefix="extend_chain")
    result = comfy_server.client.run(g.nodes, timeout=1500)
    assert_success(result)
    probe = comfy_server.probe_video(saved_video(comfy_server, result, save))
    assert (probe["frames"], probe["width"], probe["height"]) == (FRAMES + 2 * (FRAMES - 1) + 2, W, H)


def test_extend_rejects_the_refiner_model(comfy_server, pack_name):
    from test_server_graphs import _assert_ours, _run_expecting_error

    g = Graph()
    n = encoders(g)
    video = base_sampler(g, loader(g, "i2vgen_xl"), conditioning(g, n), steps=1)
    ext = extend(g, n, loader(g, "ms_vid2vid_xl"), video, seed=0)
    g.node("SaveLatent", samples=g.out(ext), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "Refine Sampler", pack_name)


def _refine(g: Graph, n: dict, model: str, latent: str, **context) -> str:
    return g.node("I2VGenXLRefineSampler", model=g.out(model), positive=g.out(n["pos"]), negative=g.out(n["neg"]),
                  latent_image=g.out(latent), seed=4, strength=0.6, steps=2, cfg=7.5, guidance_rescale=0.2,
                  sampler_name="dpmpp_2m_sde", scheduler="simple", **context)


def _load_latent(server, result, node: str):
    import safetensors.torch

    out = result.executed.get(node) or (result.history or {}).get("outputs", {}).get(node)
    item = out["latents"][0]
    return safetensors.torch.load_file(str(server.output_dir / item.get("subfolder", "") / item["filename"]))[
        "latent_tensor"]


def test_refine_in_context_windows(comfy_server):
    """9 frames in 4-frame windows (overlap 2) through ComfyUI's context handler; window >= length is exactly the
    plain refine; ComfyUI's ContextWindowsManual (dim 2) on our MODEL also runs."""
    import torch

    frames = 9
    g = Graph()
    n = encoders(g, width=REFINE_W, height=REFINE_H)
    images = g.node("EmptyImage", width=REFINE_W, height=REFINE_H, batch_size=frames, color=0x884422)
    latent = g.node("I2VGenXLVideoEncode", vae=g.out(n["vae"]), images=g.out(images), width=REFINE_W,
                    height=REFINE_H)
    model = loader(g, "ms_vid2vid_xl")
    plain = _refine(g, n, model, latent)
    one_window = _refine(g, n, model, latent, context_frames=frames, context_overlap=2)
    windows = _refine(g, n, model, latent, context_frames=4, context_overlap=2)
    manual = g.node("ContextWindowsManual", model=g.out(model), context_length=4, context_overlap=2,
                    context_schedule="standard_static", context_stride=1, closed_loop=False, fuse_method="pyramid",
                    dim=2)
    native = _refine(g, n, manual, latent)
    saves = {name: g.node("SaveLatent", samples=g.out(node), filename_prefix=f"ctx_{name}")
             for name, node in (("plain", plain), ("one", one_window), ("windows", windows), ("native", native))}
    video = decode_and_save(g, n, windows, prefix="refine_windows")
    result = comfy_server.client.run(g.nodes, timeout=1500)
    assert_success(result)
    lat = {name: _load_latent(comfy_server, result, node) for name, node in saves.items()}
    assert all(t.shape == (1, 4, frames, REFINE_H // 8, REFINE_W // 8) for t in lat.values()), \
        {k: v.shape for k, v in lat.items()}
    assert torch.equal(lat["one"], lat["plain"])
    assert torch.isfinite(lat["windows"]).all() and not torch.equal(lat["windows"], lat["plain"])
    assert torch.isfinite(lat["native"]).all()
    assert "Using context windows 4 for 9 frames" in comfy_server.log()
    probe = comfy_server.probe_video(saved_video(comfy_server, result, video))
    assert (probe["frames"], probe["width"], probe["height"]) == (frames, REFINE_W, REFINE_H)


def test_bad_context_overlap_is_explained(comfy_server, pack_name):
    from test_server_graphs import _assert_ours, _run_expecting_error

    g = Graph()
    n = encoders(g, width=REFINE_W, height=REFINE_H)
    images = g.node("EmptyImage", width=REFINE_W, height=REFINE_H, batch_size=6, color=0)
    latent = g.node("I2VGenXLVideoEncode", vae=g.out(n["vae"]), images=g.out(images), width=REFINE_W,
                    height=REFINE_H)
    r = _refine(g, n, loader(g, "ms_vid2vid_xl"), latent, context_frames=4, context_overlap=4)
    g.node("SaveLatent", samples=g.out(r), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "overlap", pack_name)

"""Graphs run by a real ComfyUI server on the demo weights: every family member, native KSampler, cancel, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

# Tiny sizes: the UNets are tiny, but the demo VAE and CLIP encoders are full size and run on the CPU.
W, H, FRAMES = 64, 64, 4
REFINE_W, REFINE_H = 128, 80  # latent height 10 survives MS-Vid2Vid-XL's padded downsampling (as 90 = 720px does)

UNETS = {
    "i2vgen_xl": "i2vgen_xl.fp16.safetensors",
    "i2vgen_xl_vgen": "i2vgen_xl_00854500.pth",
    "ms_image2video": "base_03_alldata_fps_v_80g_0789000.pth",
    "ms_vid2vid_xl": "non_ema_0035000.pth",
}
TEXT_ENCODER = "i2vgen_xl_text_encoder.fp16.safetensors"
CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
VAE = "i2vgen_xl_vae.fp16.safetensors"


class Graph:
    """API-format prompt builder: ``g.node(class_type, **inputs)`` returns the node id; ``g.out(id, i)`` a link."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def node(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    @staticmethod
    def out(node_id: str, index: int = 0) -> list:
        return [node_id, index]


def encoders(g: Graph, *, image_batch: int = 1, width: int = W, height: int = H, text: str = "a red fox"):
    """Shared front of the graphs: text, CLIP vision and VAE loaders, a flat test image and its encodings."""
    n = {}
    n["clip"] = g.node("CLIPLoader", clip_name=TEXT_ENCODER, type="stable_diffusion")
    n["pos"] = g.node("CLIPTextEncode", text=text, clip=g.out(n["clip"]))
    n["neg"] = g.node("CLIPTextEncode", text="blurry, static", clip=g.out(n["clip"]))
    n["clip_vision"] = g.node("CLIPVisionLoader", clip_name=CLIP_VISION)
    n["vae"] = g.node("VAELoader", vae_name=VAE)
    n["image"] = g.node("EmptyImage", width=96, height=72, batch_size=image_batch, color=0x3366CC)
    n["semantic"] = g.node("I2VGenXLSemanticEncode", clip_vision=g.out(n["clip_vision"]), image=g.out(n["image"]))
    n["detail"] = g.node("I2VGenXLDetailEncode", vae=g.out(n["vae"]), image=g.out(n["image"]), width=width,
                         height=height)
    return n


def conditioning(g: Graph, n: dict, *, width: int = W, height: int = H, length: int = FRAMES, fps: int = 16,
                 text: bool = True, image_latent: bool = True) -> str:
    inputs = dict(width=width, height=height, length=length, fps=fps, batch_size=1,
                  clip_vision_output=g.out(n["semantic"]))
    if text:
        inputs.update(positive=g.out(n["pos"]), negative=g.out(n["neg"]))
    if image_latent:
        inputs["image_latent"] = g.out(n["detail"])
    return g.node("I2VGenXLConditioning", **inputs)


def loader(g: Graph, variant: str, weight_dtype: str = "auto") -> str:
    return g.node("I2VGenXLModelLoader", unet_name=UNETS[variant], weight_dtype=weight_dtype, attention="auto")


def base_sampler(g: Graph, model: str, cond: str, *, steps: int = 2, cfg: float = 9.0, seed: int = 0,
                 sampler_name: str = "ddim", scheduler: str = "ddim_uniform") -> str:
    return g.node("I2VGenXLSampler", model=g.out(model), positive=g.out(cond, 0), negative=g.out(cond, 1),
                  latent_image=g.out(cond, 2), seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name,
                  scheduler=scheduler)


def decode_and_save(g: Graph, n: dict, latent: str, *, prefix: str, video: bool = True) -> str:
    dec = g.node("I2VGenXLVideoDecode", vae=g.out(n["vae"]), samples=g.out(latent), frames_per_batch=2, tile=False,
                 tile_size=512, drop_grey_last_frame=False, fps=8.0)
    if not video:
        return g.node("PreviewImage", images=g.out(dec))
    vid = g.node("CreateVideo", images=g.out(dec), fps=g.out(dec, 1))
    return g.node("SaveVideo", video=g.out(vid), filename_prefix=prefix, format="mp4", codec="h264")


def saved_video(server, result, save_node: str) -> Path:
    out = result.executed.get(save_node) or (result.history or {}).get("outputs", {}).get(save_node)
    assert out and out.get("images"), f"SaveVideo wrote nothing: {out}"
    item = out["images"][0]
    return server.output_dir / item.get("subfolder", "") / item["filename"]


def assert_success(result) -> None:
    assert result.status == "success", (f"prompt ended with {result.status}: "
                                        f"{(result.error or {}).get('exception_message')}\n"
                                        f"{''.join((result.error or {}).get('traceback', []))[-3000:]}")


# ------------------------------------------------------------------------------------------------ generation
def test_i2vgen_xl_image_to_video(comfy_server):
    """Loader -> encoders -> conditioning -> I2VGenXLSampler -> decode -> CreateVideo -> SaveVideo, with previews."""
    g = Graph()
    n = encoders(g)
    sampler = base_sampler(g, loader(g, "i2vgen_xl"), conditioning(g, n), steps=3)
    save = decode_and_save(g, n, sampler, prefix="i2vgen_base")
    result = comfy_server.client.run(g.nodes, timeout=900)
    assert_success(result)
    video = comfy_server.probe_video(saved_video(comfy_server, result, save))
    assert (video["frames"], video["width"], video["height"]) == (FRAMES, W, H)
    steps_seen = [p for p in result.progress if p[1] == sampler]
    assert [p[2] for p in steps_seen][-1] == 3 and steps_seen[-1][3] == 3, steps_seen
    assert result.previews >= 1, "no latent previews were sent while sampling"


def test_vgen_checkpoint_and_fp8_storage(comfy_server):
    """The VGen .pth loads (weights_only) and runs with fp8 weight storage (computed in fp32 on the CPU)."""
    g = Graph()
    n = encoders(g)
    sampler = base_sampler(g, loader(g, "i2vgen_xl_vgen", "fp8_e4m3fn"), conditioning(g, n), steps=2, seed=3)
    decode_and_save(g, n, sampler, prefix="vgen_fp8", video=False)
    assert_success(comfy_server.client.run(g.nodes, timeout=900))


def test_loader_speed_options(comfy_server):
    """The loader's speed levers (unfused projections, channels-last) run through ComfyUI's sampling unchanged."""
    g = Graph()
    n = encoders(g)
    model = g.node("I2VGenXLModelLoader", unet_name=UNETS["i2vgen_xl"], weight_dtype="auto", attention="chunked",
                   fused_projections=False, channels_last=True, compile="disabled")
    sampler = base_sampler(g, model, conditioning(g, n), steps=2, seed=5)
    decode_and_save(g, n, sampler, prefix="speed_options", video=False)
    assert_success(comfy_server.client.run(g.nodes, timeout=900))


def test_sampler_custom_advanced_with_a_lora(comfy_server):
    """ComfyUI's SamplerCustomAdvanced (noise, CFG guider, sampler, scheduler) on our MODEL with a LoRA applied by
    the native LoraLoaderModelOnly: every LoRA key maps onto our parameters."""
    import torch
    from safetensors.torch import save_file

    from i2vgen_core import load_unet

    unet = load_unet(comfy_server.demo_dir / "diffusion_models" / UNETS["i2vgen_xl"], device="meta")
    targets = [k[: -len(".weight")] for k in unet.state_dict()
               if k.endswith(("attn1.to_q.weight", "attn2.to_k.weight", "ff.net.2.weight"))][:6]
    g = torch.Generator().manual_seed(0)
    lora = {}
    for name in targets:
        out_f, in_f = unet.get_submodule(name).weight.shape
        lora[f"diffusion_model.{name}.lora_up.weight"] = torch.randn(out_f, 2, generator=g) * 0.1
        lora[f"diffusion_model.{name}.lora_down.weight"] = torch.randn(2, in_f, generator=g) * 0.1
        lora[f"diffusion_model.{name}.alpha"] = torch.tensor(2.0)
    save_file(lora, str(comfy_server.models_dir / "loras" / "i2vgen_test_lora.safetensors"))

    gr = Graph()
    n = encoders(gr)
    cond = conditioning(gr, n)
    model = gr.node("LoraLoaderModelOnly", model=gr.out(loader(gr, "i2vgen_xl")),
                    lora_name="i2vgen_test_lora.safetensors", strength_model=0.8)
    noise = gr.node("RandomNoise", noise_seed=9)
    guider = gr.node("CFGGuider", model=gr.out(model), positive=gr.out(cond, 0), negative=gr.out(cond, 1), cfg=9.0)
    sampler = gr.node("KSamplerSelect", sampler_name="euler")
    sigmas = gr.node("BasicScheduler", model=gr.out(model), scheduler="simple", steps=2, denoise=1.0)
    adv = gr.node("SamplerCustomAdvanced", noise=gr.out(noise), guider=gr.out(guider), sampler=gr.out(sampler),
                  sigmas=gr.out(sigmas), latent_image=gr.out(cond, 2))
    preview = decode_and_save(gr, n, adv, prefix="custom_advanced", video=False)
    result = comfy_server.client.run(gr.nodes, timeout=900)
    assert_success(result)
    assert len(result.executed[preview]["images"]) == FRAMES
    assert "lora key not loaded" not in comfy_server.log(), "a LoRA key did not map onto the I2VGen-XL UNet"


def test_ms_image2video_without_text(comfy_server):
    """MS-Image2Video: CLIP image only (no text, no image latent), fps 8, cfg 3, 448:256-like aspect."""
    g = Graph()
    n = encoders(g)
    cond = conditioning(g, n, width=112, height=64, fps=8, text=False, image_latent=False)
    sampler = base_sampler(g, loader(g, "ms_image2video"), cond, steps=2, cfg=3.0)
    preview = decode_and_save(g, n, sampler, prefix="ms_i2v", video=False)
    result = comfy_server.client.run(g.nodes, timeout=900)
    assert_success(result)
    images = result.executed[preview]["images"]
    assert len(images) == FRAMES


def test_native_ksampler_runs_on_our_model(comfy_server):
    """ComfyUI's own KSampler samples our MODEL with our conditioning (conds batched by ComfyUI)."""
    g = Graph()
    n = encoders(g)
    cond = conditioning(g, n)
    ks = g.node("KSampler", model=g.out(loader(g, "i2vgen_xl")), seed=5, steps=2, cfg=9.0, sampler_name="euler",
                scheduler="normal", positive=g.out(cond, 0), negative=g.out(cond, 1), latent_image=g.out(cond, 2),
                denoise=1.0)
    preview = decode_and_save(g, n, ks, prefix="ksampler", video=False)
    result = comfy_server.client.run(g.nodes, timeout=900)
    assert_success(result)
    assert len(result.executed[preview]["images"]) == FRAMES


@pytest.mark.parametrize("refiner", ["ms_vid2vid_xl", "i2vgen_xl"])
def test_refine_sampler(comfy_server, refiner):
    """SDEdit refinement of an encoded video with MS-Vid2Vid-XL (text only) and with I2VGen-XL itself."""
    g = Graph()
    n = encoders(g, width=REFINE_W, height=REFINE_H)
    frames = g.node("EmptyImage", width=REFINE_W, height=REFINE_H, batch_size=FRAMES, color=0x884422)
    latent = g.node("I2VGenXLVideoEncode", vae=g.out(n["vae"]), images=g.out(frames), width=REFINE_W,
                    height=REFINE_H)
    if refiner == "ms_vid2vid_xl":
        pos, neg = g.out(n["pos"]), g.out(n["neg"])
    else:
        cond = conditioning(g, n, width=REFINE_W, height=REFINE_H)
        pos, neg = g.out(cond, 0), g.out(cond, 1)
    refine = g.node("I2VGenXLRefineSampler", model=g.out(loader(g, refiner)), positive=pos, negative=neg,
                    latent_image=g.out(latent), seed=1, strength=0.6, steps=3, cfg=7.5, guidance_rescale=0.2,
                    sampler_name="dpmpp_2m_sde", scheduler="simple")
    save = decode_and_save(g, n, refine, prefix=f"refine_{refiner}")
    result = comfy_server.client.run(g.nodes, timeout=900)
    assert_success(result)
    video = comfy_server.probe_video(saved_video(comfy_server, result, save))
    assert (video["frames"], video["width"], video["height"]) == (FRAMES, REFINE_W, REFINE_H)
    assert [p[3] for p in result.progress if p[1] == refine][-1] == 3


def test_cascade_timing_and_peak_memory(comfy_server, record_property):
    """MS-Image2Video base -> pixel-space latent upscale (more frames) -> MS-Vid2Vid-XL refine -> mp4; measured."""
    g = Graph()
    n = encoders(g)
    cond = conditioning(g, n, width=112, height=64, fps=8, text=False, image_latent=False)
    base = base_sampler(g, loader(g, "ms_image2video"), cond, steps=4, cfg=3.0, seed=11)
    up = g.node("I2VGenXLLatentUpscale", samples=g.out(base), width=REFINE_W, height=REFINE_H, mode="pixel",
                frames=2 * FRAMES, frame_mode="repeat", snap_for_refiner=True, vae=g.out(n["vae"]),
                frames_per_batch=4)
    refine = g.node("I2VGenXLRefineSampler", model=g.out(loader(g, "ms_vid2vid_xl")), positive=g.out(n["pos"]),
                    negative=g.out(n["neg"]), latent_image=g.out(up), seed=2, strength=0.6, steps=4, cfg=7.5,
                    guidance_rescale=0.2, sampler_name="dpmpp_2m_sde", scheduler="simple")
    save = decode_and_save(g, n, refine, prefix="cascade")
    comfy_server.client.post("/free", {"unload_models": True, "free_memory": True})
    reset = comfy_server.reset_peak_rss()
    result = comfy_server.client.run(g.nodes, timeout=1800)
    assert_success(result)
    video = comfy_server.probe_video(saved_video(comfy_server, result, save))
    assert (video["frames"], video["width"], video["height"]) == (2 * FRAMES, REFINE_W, REFINE_H)
    peak = comfy_server.peak_rss_mb()
    record_property("cascade_seconds", round(result.seconds, 1))
    record_property("server_peak_rss_mib", peak)
    print(f"\n[metrics] own cascade graph: {result.seconds:.1f} s on CPU, server peak RSS "
          f"{peak:.0f} MiB ({'since reset' if reset else 'since start'})")


# ------------------------------------------------------------------------------------------------ cancel
def test_interrupt_stops_within_one_step_and_next_prompt_runs(comfy_server):
    g = Graph()
    n = encoders(g)
    cond = conditioning(g, n)
    model = loader(g, "i2vgen_xl")
    sampler = base_sampler(g, model, cond, steps=400, seed=21, sampler_name="euler", scheduler="normal")
    g.node("SaveLatent", samples=g.out(sampler), filename_prefix="never")
    state = {}

    def on_event(kind, data, result):
        if kind == "progress" and data.get("node") == sampler and data["value"] >= 3 and "at" not in state:
            state["at"] = data["value"]
            comfy_server.client.interrupt()

    result = comfy_server.client.run(g.nodes, timeout=900, on_event=on_event)
    assert result.status == "interrupted", f"expected an interruption, got {result.status} {result.error}"
    last = max(p[2] for p in result.progress if p[1] == sampler)
    assert last <= state["at"] + 1, f"interrupt requested at step {state['at']}, sampling went on to {last}"

    g2 = Graph()
    n2 = encoders(g2)
    s2 = base_sampler(g2, loader(g2, "i2vgen_xl"), conditioning(g2, n2), steps=2, seed=22)
    g2.node("SaveLatent", samples=g2.out(s2), filename_prefix="after_interrupt")
    assert_success(comfy_server.client.run(g2.nodes, timeout=900))


# ------------------------------------------------------------------------------------------------ bad inputs
def _run_expecting_error(server, graph: Graph):
    """Run a graph that must fail; returns the error text (validation rejection or execution error)."""
    from_validation = None
    try:
        result = server.client.run(graph.nodes, timeout=900)
    except Exception as err:  # PromptRejected (defined in conftest)
        if type(err).__name__ != "PromptRejected":
            raise
        from_validation = err.messages()
    if from_validation is not None:
        return "validation", from_validation, ""
    assert result.status == "error", f"expected an error, got {result.status}"
    err = result.error
    return "execution", f"{err['exception_type']}: {err['exception_message']}", "".join(err.get("traceback", []))


def _assert_ours(kind: str, message: str, traceback: str, expect: str, pack_name: str) -> None:
    assert expect.lower() in message.lower(), f"expected {expect!r} in the {kind} error, got: {message}"
    if kind == "execution":
        assert "ValueError" in message, message
        frames = [line for line in traceback.splitlines() if line.strip().startswith("File ")]
        assert frames and pack_name in frames[-1], f"the error was not raised by our code:\n{traceback[-2000:]}"


def test_height_not_multiple_of_8_is_rejected(comfy_server, pack_name):
    g = Graph()
    n = encoders(g)
    s = base_sampler(g, loader(g, "i2vgen_xl"), conditioning(g, n, height=68), steps=1)
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    kind, msg, tb = _run_expecting_error(comfy_server, g)
    assert kind == "validation"
    _assert_ours(kind, msg, tb, "multiple of 8", pack_name)


def test_zero_frames_is_rejected(comfy_server, pack_name):
    g = Graph()
    n = encoders(g)
    s = base_sampler(g, loader(g, "i2vgen_xl"), conditioning(g, n, length=0), steps=1)
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    kind, msg, tb = _run_expecting_error(comfy_server, g)
    assert kind == "validation" and "length" in msg, msg


def test_refiner_in_base_sampler_is_an_error(comfy_server, pack_name):
    g = Graph()
    n = encoders(g)
    s = base_sampler(g, loader(g, "ms_vid2vid_xl"), conditioning(g, n), steps=1)
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "I2VGenXLRefineSampler", pack_name)


def test_image_batch_of_two_is_an_error(comfy_server, pack_name):
    g = Graph()
    n = encoders(g, image_batch=2)
    s = base_sampler(g, loader(g, "i2vgen_xl"), conditioning(g, n), steps=1)
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "batch of 2", pack_name)


def test_plain_text_conditioning_on_i2vgen_xl_is_an_error(comfy_server, pack_name):
    g = Graph()
    n = encoders(g)
    cond = conditioning(g, n)
    s = g.node("I2VGenXLSampler", model=g.out(loader(g, "i2vgen_xl")), positive=g.out(n["pos"]),
               negative=g.out(n["neg"]), latent_image=g.out(cond, 2), seed=0, steps=1, cfg=9.0, sampler_name="ddim",
               scheduler="ddim_uniform")
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "I2VGenXLConditioning", pack_name)


def test_image_latent_instead_of_video_latent_is_an_error(comfy_server, pack_name):
    g = Graph()
    n = encoders(g)
    cond = conditioning(g, n)
    empty = g.node("EmptyLatentImage", width=W, height=H, batch_size=1)
    s = g.node("I2VGenXLSampler", model=g.out(loader(g, "i2vgen_xl")), positive=g.out(cond, 0),
               negative=g.out(cond, 1), latent_image=g.out(empty), seed=0, steps=1, cfg=9.0, sampler_name="ddim",
               scheduler="ddim_uniform")
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "video latent", pack_name)


def test_refiner_height_it_cannot_take_is_an_error(comfy_server, pack_name):
    g = Graph()
    n = encoders(g)
    frames = g.node("EmptyImage", width=W, height=H, batch_size=2, color=0)
    latent = g.node("I2VGenXLVideoEncode", vae=g.out(n["vae"]), images=g.out(frames), width=W, height=H)
    s = g.node("I2VGenXLRefineSampler", model=g.out(loader(g, "ms_vid2vid_xl")), positive=g.out(n["pos"]),
               negative=g.out(n["neg"]), latent_image=g.out(latent), seed=0, strength=0.6, steps=1, cfg=7.5,
               guidance_rescale=0.2, sampler_name="dpmpp_2m_sde", scheduler="simple")
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    _assert_ours(*_run_expecting_error(comfy_server, g), "720", pack_name)


def test_wrong_file_in_loader_is_an_error(comfy_server, pack_name):
    bad = comfy_server.models_dir / "i2vgen" / "not_a_unet.safetensors"
    if not bad.exists():
        os.symlink(comfy_server.demo_dir / "vae" / VAE, bad)
    g = Graph()
    m = g.node("I2VGenXLModelLoader", unet_name="not_a_unet.safetensors", weight_dtype="auto", attention="auto")
    n = encoders(g)
    s = base_sampler(g, m, conditioning(g, n), steps=1)
    g.node("SaveLatent", samples=g.out(s), filename_prefix="bad")
    kind, msg, tb = _run_expecting_error(comfy_server, g)
    _assert_ours(kind, msg, tb, "not_a_unet.safetensors", pack_name)
    assert "VAE" in msg or "vae" in msg, f"the message should say what the file looks like: {msg}"


# ------------------------------------------------------------------------------------------------ model patches
def _saved_latent(server, result, node: str):
    from safetensors.torch import load_file

    out = result.executed.get(node) or (result.history or {}).get("outputs", {}).get(node)
    assert out and out.get("latents"), f"SaveLatent wrote nothing: {out}"
    item = out["latents"][0]
    return load_file(str(server.output_dir / item.get("subfolder", "") / item["filename"]))["latent_tensor"]


def test_stock_model_patch_nodes_over_http(comfy_server):
    """FreeU_V2 -> PerturbedAttentionGuidance -> ContextWindowsManual (frames) -> EasyCache between the loader and
    the pack's sampler, through the HTTP API: the prompt succeeds and the latent differs from the unpatched run."""
    latents = {}
    size = 128  # latent 16x16: FreeU_V2 normalises each block's mean map by its range, which a 1x1 map lacks
    for name in ("plain", "patched"):
        g = Graph()
        n = encoders(g, width=size, height=size)
        model = loader(g, "i2vgen_xl")
        if name == "patched":
            model = g.node("FreeU_V2", model=g.out(model), b1=1.3, b2=1.4, s1=0.9, s2=0.2)
            model = g.node("PerturbedAttentionGuidance", model=g.out(model), scale=3.0)
            model = g.node("ContextWindowsManual", model=g.out(model), context_length=4, context_overlap=1,
                           context_schedule="standard_static", context_stride=1, closed_loop=False,
                           fuse_method="pyramid", dim=2)
            model = g.node("EasyCache", model=g.out(model), reuse_threshold=0.2, start_percent=0.15,
                           end_percent=0.95, verbose=False)
        sampler = base_sampler(g, model, conditioning(g, n, width=size, height=size, length=6), steps=3, seed=11)
        save = g.node("SaveLatent", samples=g.out(sampler), filename_prefix=f"patches_{name}")
        result = comfy_server.client.run(g.nodes, timeout=900)
        assert_success(result)
        latents[name] = _saved_latent(comfy_server, result, save)
    assert latents["plain"].shape == latents["patched"].shape
    assert (latents["plain"] - latents["patched"]).abs().max().item() > 1e-3

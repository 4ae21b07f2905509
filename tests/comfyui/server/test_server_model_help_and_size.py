"""On a real ComfyUI server: missing-model messages, the model-file route, the preview route and the one-size
rule of I2VGen-XL Conditioning."""

from __future__ import annotations

import pytest

from i2vgen_core.weights.catalog import MODEL_FILES

pytestmark = pytest.mark.comfyui

VAE = "i2vgen_xl_vae.fp16.safetensors"


def _rejection(server, prompt: dict) -> str:
    try:
        server.client.queue(prompt)
    except Exception as err:  # PromptRejected (conftest)
        if type(err).__name__ != "PromptRejected":
            raise
        return err.messages()
    pytest.fail("the prompt was accepted")


@pytest.mark.parametrize("name, repo", [("non_ema_0035000_missing.pth", None),
                                        ("base_03_alldata_fps_v_80g_0789000.pth", "ali-vilab/MS-Image2Video")])
def test_missing_unet_says_what_to_get_and_where(comfy_server, name, repo):
    """A loader file the server lacks is rejected before running, naming repository, file and models/ folder."""
    listed = comfy_server.client.get("/object_info/I2VGenXLModelLoader")["I2VGenXLModelLoader"]
    choices = listed["input"]["required"]["unet_name"][0]
    if name in choices:  # the demo set has every real name; hide one by asking for a name in another folder
        name = "elsewhere/" + name
    prompt = {"1": {"class_type": "I2VGenXLModelLoader",
                    "inputs": {"unet_name": name, "weight_dtype": "auto", "attention": "auto"}},
              "2": {"class_type": "I2VGenXLConditioning",
                    "inputs": {"width": 64, "height": 64, "length": 2, "fps": 8, "batch_size": 1}},
              "3": {"class_type": "KSampler", "inputs": {
                  "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 1], "latent_image": ["2", 2], "seed": 0,
                  "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
              "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "x"}}}
    msg = _rejection(comfy_server, prompt)
    assert "huggingface.co/ali-vilab/" in msg and "ComfyUI/models/diffusion_models/" in msg, msg
    if repo:
        assert repo in msg, msg
    else:  # unknown name: every UNet of the family is offered
        for r in ("ali-vilab/i2vgen-xl", "ali-vilab/MS-Image2Video", "ali-vilab/MS-Vid2Vid-XL"):
            assert r in msg, msg


def test_model_files_route_serves_the_table(comfy_server):
    got = comfy_server.client.get("/i2vgen-xl/model_files")["files"]
    assert [(f["name"], f["url"], f["folder"]) for f in got] == [(f.name, f.url, f.folder) for f in MODEL_FILES]


def test_preview_route(comfy_server):
    info = comfy_server.client.get("/i2vgen-xl/preview")
    assert info["setting"] == "I2VGen-XL.AnimatedPreview" and info["server_switch_off"] is False
    status, body = comfy_server.client.post("/i2vgen-xl/preview", {"animated": True})
    assert status == 400 and "client_id" in body["error"]
    status, body = comfy_server.client.post("/i2vgen-xl/preview", {"client_id": "someone", "animated": False})
    assert status == 200 and body["animated"] is False


def test_conditioning_takes_its_size_from_the_image_latent(comfy_server):
    """Detail Encode at 96x64 and Conditioning's own widgets at 128x96: the video latent is 96x64 (12x8 latent)."""
    from safetensors.torch import load_file

    prompt = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
              "2": {"class_type": "EmptyImage", "inputs": {"width": 80, "height": 60, "batch_size": 1,
                                                           "color": 0x336699}},
              "3": {"class_type": "I2VGenXLDetailEncode", "inputs": {"vae": ["1", 0], "image": ["2", 0], "width": 96,
                                                                     "height": 64}},
              "4": {"class_type": "I2VGenXLConditioning", "inputs": {"width": 128, "height": 96, "length": 3, "fps": 8,
                                                                     "batch_size": 1, "image_latent": ["3", 0]}},
              "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 2], "filename_prefix": "one_size"}}}
    result = comfy_server.client.run(prompt, timeout=900)
    assert result.status == "success", result.error
    item = result.executed["5"]["latents"][0]
    latent = load_file(str(comfy_server.output_dir / item["subfolder"] / item["filename"]))["latent_tensor"]
    assert tuple(latent.shape) == (1, 4, 3, 8, 12), latent.shape


def test_memory_estimate_route_gives_the_conditioning_estimate_before_a_run(comfy_server):
    """GET /i2vgen-xl/memory_estimate (what js/estimate.js shows while the graph is edited): the same lines the
    Conditioning node gives when it runs, a size rule's message for a bad size, and a WARNING for a run that can
    never fit, instead of the refusal the node raises."""
    import json
    import urllib.error
    import urllib.request

    def get(query: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{comfy_server.client.base}/i2vgen-xl/memory_estimate?{query}",
                                        timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, body = get("width=1280&height=704&length=16&batch_size=1&image_latent=1&clip_vision_output=1")
    assert status == 200 and body["lines"][0].startswith("Estimated peak memory with fp32 weights on the CPU (RAM): "), body
    assert any(line.startswith("Estimated peak memory with fp8 weights") for line in body["lines"]), body
    shorter = get("width=1280&height=704&length=8&batch_size=1&image_latent=1&clip_vision_output=1")[1]
    assert shorter["lines"][0] != body["lines"][0], (shorter, body)
    status, bad = get("width=1001&height=704&length=16&batch_size=1")
    assert status == 400 and "1001" in bad["error"], bad
    status, huge = get("width=8192&height=8192&length=1000&batch_size=1")
    assert status == 200 and huge["lines"][0].startswith("WARNING: This run needs at least "), huge
    assert "cannot run" in huge["lines"][0], huge


def test_refine_estimate_route_follows_the_loader_and_the_windows(comfy_server):
    """GET /i2vgen-xl/memory_estimate/refine: the Refine Sampler's estimate from the video it will get and its
    loader's widgets; context windows count one window; a bad size is a 400 with the size rule's message."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    def get(**query) -> tuple[int, dict]:
        base = {"width": 1280, "height": 720, "frames": 32, "batch_size": 1, "context_frames": 0, "cfg": 7.5,
                "unet_name": "non_ema_0035000.pth", "weight_dtype": "auto", "attention": "auto"}
        url = f"{comfy_server.client.base}/i2vgen-xl/memory_estimate/refine?" + urllib.parse.urlencode({**base, **query})
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def sampling(body) -> float:
        return float(body["lines"][0].split("sampling ")[1].split(" GiB")[0])

    status, whole = get()
    assert status == 200 and whole["lines"][0].startswith("Estimated peak memory on the CPU (RAM): "), whole
    windows = get(frames=128, context_frames=32)[1]
    assert sampling(windows) == sampling(whole), (windows, whole)  # 128 frames in 32-frame windows = 32 frames
    long_video = get(frames=128)[1]  # whole: more than this machine's RAM; the advice is the refiner's own lever
    assert any("refine in context windows: context_frames" in line for line in long_video["lines"]), long_video
    fp8 = get(weight_dtype="fp8_e4m3fn")[1]
    assert fp8["lines"][0] != whole["lines"][0], fp8
    status, bad = get(width=1001)
    assert status == 400 and "1001" in bad["error"], bad

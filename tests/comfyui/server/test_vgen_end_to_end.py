"""The shipped single-stage workflow, run by a real ComfyUI server, against VGen's own I2VGen-XL inference, stage by
stage, on the same random full-size weights.

VGen (github.com/ali-vilab/VGen, the paper's release) is never downloaded: VGEN_PATH names a checkout, and ComfyUI's
Python needs what VGen imports on this path (``pip install --no-deps open_clip_torch==2.0.2 ftfy easydict``: VGen pins
open_clip 2.0.2, whose text transformer takes sequence-first input as VGen's embedder feeds it). Without them the
tests skip, as in CI. About 15 minutes and 14 GB of memory on a 2-core CPU.

1. ``vgen_inference.py make`` writes random weights at the real architecture in the release's formats (VGen's UNet
   checkpoint, open_clip's ViT-H-14, the SD2.1 checkpoint's autoencoder) and a test image.
2. The pack's own commands turn them into the files the workflow loads (``python -m i2vgen_core convert`` to an fp16
   UNet, ``split-encoders`` to ComfyUI's text encoder, CLIP vision and VAE files), as a user does with the release.
3. ``vgen_inference.py infer`` runs VGen's ``inference_i2vgen_entrance`` on the CPU and records every stage.
4. workflows/api/i2vgen_xl_image_to_video.api.json goes to a server's /prompt with only its file names, image, size,
   frame count and the seed changed (prompt, negative prompt, steps, cfg, fps, sampler as shipped); a test-only
   extension (stage_recorder/) records the same stages inside the server.

Each test compares one stage. Relative figures are max |ours - VGen| / max |VGen|.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, start_server, stop_server
from workflow_utils import HEADLESS, load_api_workflow

pytestmark = pytest.mark.comfyui

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "vgen_inference.py"
RECORDER = HERE / "stage_recorder"
WORKFLOW = REPO / "workflows" / "api" / "i2vgen_xl_image_to_video.api.json"
SCALE = 0.18215
# a small size (VGen's ``resolution`` is [width, height]); the rest is the workflow's
WIDTH, HEIGHT, FRAMES, SEED = 128, 64, 4, 8888


def _rel(a, b) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def _node(nodes: dict, node_id: str) -> dict:
    hits = [v for k, v in nodes.items() if k.split(":")[0] == node_id]
    assert hits, f"node {node_id} did not run; ran: {sorted(nodes)}"
    return hits[0]


@pytest.fixture(scope="module")
def vgen_path() -> Path:
    path = os.environ.get("VGEN_PATH")
    if not path:
        pytest.skip("VGEN_PATH is unset: set it to a checkout of github.com/ali-vilab/VGen to compare with the "
                    "original code")
    vgen = Path(path)
    if not (vgen / "tools/inferences/inference_i2vgen_entrance.py").is_file():
        pytest.skip(f"VGEN_PATH={path} has no tools/inferences/inference_i2vgen_entrance.py")
    return vgen


@pytest.fixture(scope="module")
def workflow() -> dict:
    return load_api_workflow(WORKFLOW)


def _run(cmd: list, timeout: float) -> None:
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def runs(vgen_path, comfyui_install, workflow, tmp_path_factory):
    """Both records: (VGen's, the server's, the submitted graph). I2VGEN_E2E_DIR keeps the weights between runs."""
    _root, python = comfyui_install
    probe = subprocess.run([str(python), "-c", "import open_clip, easydict, ftfy"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip("ComfyUI's Python lacks what VGen imports: pip install --no-deps open_clip_torch==2.0.2 ftfy "
                    "easydict")
    work = Path(os.environ.get("I2VGEN_E2E_DIR") or tmp_path_factory.mktemp("vgen_e2e"))
    release, converted = work / "release", work / "converted"
    _run([python, SCRIPT, "make", vgen_path, release], 1800)
    converted.mkdir(parents=True, exist_ok=True)
    unet = converted / "vgen_e2e_unet.fp16.safetensors"
    if not unet.exists():
        _run([python, "-m", "i2vgen_core", "convert", release / "i2vgen_xl_00854500.pth", unet, "--dtype", "fp16"],
             1800)
    for src in ("open_clip_pytorch_model.bin", "v2-1_512-ema-pruned.ckpt"):
        if not any(p.name.startswith(Path(src).stem) for p in converted.iterdir()):
            _run([python, "-m", "i2vgen_core", "split-encoders", release / src, converted, "--dtype", "fp16"], 1800)
    files = {kind: [p for p in converted.iterdir() if p.name.endswith(f".{kind}.safetensors")
                    or p.name.endswith(f".{kind}.fp16.safetensors")] for kind in ("text", "vision", "vae")}
    assert all(len(v) == 1 for v in files.values()), \
        f"split-encoders wrote {sorted(p.name for p in converted.iterdir())}"

    pos, neg = workflow["6"]["inputs"]["text"], workflow["7"]["inputs"]["text"]
    sampler = workflow["11"]["inputs"]
    settings = {"seed": SEED, "prompt": pos, "negative": neg, "width": WIDTH, "height": HEIGHT, "frames": FRAMES,
                "steps": sampler["steps"], "cfg": sampler["cfg"], "fps": workflow["10"]["inputs"]["fps"]}
    vgen_out = work / "vgen_record.pt"
    stamp = work / "vgen_record.json"
    if not (vgen_out.exists() and stamp.exists() and json.loads(stamp.read_text()) == settings):
        _run([python, SCRIPT, "infer", vgen_path, release, vgen_out, json.dumps(settings)], 3600)
        stamp.write_text(json.dumps(settings))

    base = tmp_path_factory.mktemp("vgen_e2e_server")
    for folder, path in (("i2vgen", unet), ("clip", files["text"][0]), ("clip_vision", files["vision"][0]),
                         ("vae", files["vae"][0])):
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        os.symlink(path, base / "models" / folder / path.name)
    (base / "input").mkdir(parents=True, exist_ok=True)
    shutil.copy2(release / "vgen_e2e_image.png", base / "input" / "vgen_e2e_image.png")
    prompt = HEADLESS.apply_overrides(workflow, image="vgen_e2e_image.png", seed=SEED, sets=[
        f"1.unet_name={unet.name}", f"2.clip_name={files['text'][0].name}",
        f"3.clip_name={files['vision'][0].name}", f"4.vae_name={files['vae'][0].name}",
        f"8.square_size={WIDTH}", f"9.width={WIDTH}", f"9.height={HEIGHT}", f"10.width={WIDTH}",
        f"10.height={HEIGHT}", f"10.length={FRAMES}"])
    record = base / "comfy_record.pt"
    server = start_server(base, extra_nodes=(RECORDER,), env={"I2VGEN_RECORD_STAGES": str(record)})
    try:
        result = server.client.run(prompt, timeout=3600)
    finally:
        stop_server(server)
    assert result.status == "success", f"{result.status}: {(result.error or {}).get('exception_message')}"
    return torch.load(vgen_out, weights_only=False), torch.load(record, weights_only=False), prompt


def test_the_graph_differs_from_the_shipped_one_only_in_files_size_and_seed(runs, workflow):
    _vgen, _comfy, prompt = runs
    changed = {(k, name) for k, node in workflow.items() for name, value in node["inputs"].items()
               if prompt[k]["inputs"][name] != value}
    allowed = {("1", "unet_name"), ("2", "clip_name"), ("3", "clip_name"), ("4", "vae_name"), ("5", "image"),
               ("8", "square_size"), ("9", "width"), ("9", "height"), ("10", "width"), ("10", "height"),
               ("10", "length"), ("9", "seed"), ("11", "seed")}
    assert changed <= allowed, sorted(changed - allowed)


@pytest.mark.parametrize("which", ["6", "7"])
def test_token_ids_equal_open_clip(runs, which):
    vgen, comfy, prompt = runs
    text = prompt[which]["inputs"]["text"]
    ours = next(iter(comfy["tokens"][text].values()))[0]
    theirs = vgen["tokens"][text].tolist()
    assert ours == theirs, (ours, theirs)


@pytest.mark.parametrize("which", ["6", "7"])
def test_text_embedding(runs, which):
    vgen, comfy, prompt = runs
    ours = _node(comfy["nodes"], which)["0.0.0.0"]  # output 0, item 0, conditioning entry 0, its embedding
    theirs = vgen["text"][prompt[which]["inputs"]["text"]]
    err = _rel(ours[0], theirs)
    print(f"text embedding ({'prompt' if which == '6' else 'negative'}): {err:.2e}")
    assert err < 1e-4


def test_clip_pixels_and_image_embedding(runs):
    vgen, comfy, _ = runs
    pixels = _rel(comfy["clip_pixels"], vgen["clip_pixels"])
    embedding = _rel(_node(comfy["nodes"], "8")["0.0.image_embeds"], vgen["image_embedding"])
    print(f"CLIP input pixels: {pixels:.2e}, image embedding: {embedding:.2e}")
    assert pixels < 1e-5 and embedding < 1e-4


def test_image_latent(runs):
    vgen, comfy, _ = runs
    ours = _node(comfy["nodes"], "9")["0.0.samples"] * SCALE
    theirs = vgen["image_latent"]
    err = _rel(ours.reshape(theirs.shape), theirs)
    print(f"image latent (posterior sample x {SCALE}): {err:.2e}")
    assert vgen["scale_factor"] == SCALE and err < 1e-4


def test_start_noise(runs):
    vgen, comfy, _ = runs
    assert len(comfy["noise"]) == 1
    err = (comfy["noise"][0] - vgen["noise"]).abs().max().item()
    print(f"start noise: max abs {err:.1e}")
    assert err == 0.0


def test_timesteps_and_each_unet_call(runs):
    vgen, comfy, _ = runs
    theirs = [int(s["t"]) for s in vgen["steps"]]
    ours = [c["t"] for c in comfy["unet_calls"]]
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    assert [round(float(t[0])) for t in ours] == theirs
    assert max(float((t - t.round()).abs().max()) for t in ours) < 1e-3
    worst = {"cond": 0.0, "uncond": 0.0, "input": 0.0}
    pairs = [vgen["unet_calls"][i:i + 2] for i in range(0, len(vgen["unet_calls"]), 2)]
    for call, pair in zip(comfy["unet_calls"], pairs):
        for ref in pair:
            row = call["cond_or_uncond"].index(0 if ref["branch"] == "cond" else 1)
            worst[ref["branch"]] = max(worst[ref["branch"]], _rel(call["out"][row:row + 1], ref["out"]))
            worst["input"] = max(worst["input"], _rel(call["x"][row:row + 1], ref["x"]))
    print("each UNet call, worst of", len(pairs), "steps:", {k: f"{v:.2e}" for k, v in worst.items()})
    assert max(worst.values()) < 1e-3, worst


def test_cfg_each_step(runs):
    vgen, comfy, _ = runs
    errs = [_rel(ours["denoised"], ref["x0"]) for ours, ref in zip(comfy["steps"], vgen["steps"])]
    assert len(errs) == len(vgen["steps"])
    print(f"guided x0 per step: first {errs[0]:.2e}, worst {max(errs):.2e}, last {errs[-1]:.2e}")
    assert max(errs) < 1e-3


def test_final_latent(runs):
    """The last DDIM step is the one documented difference: VGen steps to alphas_cumprod[0] (0.99996), keeping
    sqrt(1 - 0.99996) = 0.0063 of the predicted noise; ComfyUI's samplers end at sigma 0, the clean prediction. So the
    node's latent equals VGen's last clean prediction x0, and differs from VGen's final latent by that step alone."""
    vgen, comfy, _ = runs
    ours = _node(comfy["nodes"], "11")["0.0.samples"] * SCALE
    clean = _rel(ours, vgen["steps"][-1]["x0"])
    last_step = _rel(ours, vgen["final_latent"])
    print(f"final latent: {clean:.2e} against VGen's last clean prediction; {last_step:.2e} against VGen's final "
          f"latent (the last step to alphas_cumprod[0])")
    assert clean < 1e-4
    assert last_step < 2e-2  # the documented last step, nothing else


def test_frames(runs):
    """I2VGen-XL Video Decode's frames against VGen's decoder on the same clean latent, and against VGen's own video
    (the last-step difference above); the grey-last-frame check (on in the workflow, as VGen's writer does it) keeps
    the same frames."""
    vgen, comfy, _ = runs
    ours = _node(comfy["nodes"], "12")["0.0"]  # IMAGE [frames, H, W, 3] in [0, 1]
    assert ours.shape[0] == vgen["frames_written"].shape[0], "the grey-last-frame check disagrees with VGen's"
    n = ours.shape[0]
    clean = (ours - vgen["frames_float_from_x0"].movedim(1, -1)[:n]).abs().max().item()
    own = (ours - vgen["frames_float"].movedim(1, -1)[:n]).abs().max().item()
    levels = ((ours * 255).to(torch.uint8).int() - vgen["frames_written"].int()).abs().max().item()
    print(f"frames: max abs {clean:.2e} of [0, 1] against VGen's decoder on the clean latent; {own:.2e} against "
          f"VGen's video ({levels} of 255 levels in the written frames: the last step)")
    assert clean < 1e-4
    assert own < 2e-2

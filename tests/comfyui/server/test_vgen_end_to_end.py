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
from pathlib import Path

import pytest
import torch

from conftest import REPO
from e2e_support import (SCALE, check_final_latent, check_frames, check_guided_steps, check_unet_calls, node,
                         reference_python, rel, run, serve_and_record, split_encoders, work_dir)
from workflow_utils import HEADLESS, load_api_workflow

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "vgen_inference.py"
WORKFLOW = REPO / "workflows" / "api" / "i2vgen_xl_image_to_video.api.json"
# a small size (VGen's ``resolution`` is [width, height]); the rest is the workflow's
WIDTH, HEIGHT, FRAMES, SEED = 128, 64, 4, 8888


@pytest.fixture(scope="module")
def workflow() -> dict:
    return load_api_workflow(WORKFLOW)


@pytest.fixture(scope="module")
def runs(vgen_path, comfyui_install, workflow, tmp_path_factory):
    """Both records: (VGen's, the server's, the submitted graph). I2VGEN_E2E_DIR keeps the weights between runs."""
    python = reference_python(comfyui_install, "open_clip, easydict, ftfy",
                              "pip install --no-deps open_clip_torch==2.0.2 ftfy easydict")
    work = work_dir(tmp_path_factory, "vgen")
    release, converted = work / "release", work / "converted"
    run([python, SCRIPT, "make", vgen_path, release], 1800)
    converted.mkdir(parents=True, exist_ok=True)
    unet = converted / "vgen_e2e_unet.fp16.safetensors"
    if not unet.exists():
        run([python, "-m", "i2vgen_core", "convert", release / "i2vgen_xl_00854500.pth", unet, "--dtype", "fp16"],
            1800)
    files = split_encoders(python, [release / "open_clip_pytorch_model.bin", release / "v2-1_512-ema-pruned.ckpt"],
                           converted)

    pos, neg = workflow["6"]["inputs"]["text"], workflow["7"]["inputs"]["text"]
    sampler = workflow["11"]["inputs"]
    settings = {"seed": SEED, "prompt": pos, "negative": neg, "width": WIDTH, "height": HEIGHT, "frames": FRAMES,
                "steps": sampler["steps"], "cfg": sampler["cfg"], "fps": workflow["10"]["inputs"]["fps"]}
    vgen_out, stamp = work / "vgen_record.pt", work / "vgen_record.json"
    if not (vgen_out.exists() and stamp.exists() and json.loads(stamp.read_text()) == settings):
        run([python, SCRIPT, "infer", vgen_path, release, vgen_out, json.dumps(settings)], 3600)
        stamp.write_text(json.dumps(settings))

    prompt = HEADLESS.apply_overrides(workflow, image="vgen_e2e_image.png", seed=SEED, sets=[
        f"1.unet_name={unet.name}", f"2.clip_name={files['text'].name}", f"3.clip_name={files['vision'].name}",
        f"4.vae_name={files['vae'].name}", f"8.square_size={WIDTH}", f"9.width={WIDTH}", f"9.height={HEIGHT}",
        f"10.width={WIDTH}", f"10.height={HEIGHT}", f"10.length={FRAMES}"])
    models = {"i2vgen": unet, "clip": files["text"], "clip_vision": files["vision"], "vae": files["vae"]}
    comfy = serve_and_record(tmp_path_factory.mktemp("vgen_e2e_server"), prompt, models,
                             release / "vgen_e2e_image.png")
    return torch.load(vgen_out, weights_only=False), comfy, prompt


def test_the_graph_differs_from_the_shipped_one_only_in_files_size_and_seed(runs, workflow):
    _vgen, _comfy, prompt = runs
    changed = {(k, name) for k, n in workflow.items() for name, value in n["inputs"].items()
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
    ours = node(comfy, which)["0.0.0.0"]  # output 0, item 0, conditioning entry 0, its embedding
    err = rel(ours[0], vgen["text"][prompt[which]["inputs"]["text"]])
    print(f"text embedding ({'prompt' if which == '6' else 'negative'}): {err:.2e}")
    assert err < 1e-4


def test_clip_pixels_and_image_embedding(runs):
    vgen, comfy, _ = runs
    pixels = rel(comfy["clip_pixels"], vgen["clip_pixels"])
    embedding = rel(node(comfy, "8")["0.0.image_embeds"], vgen["image_embedding"])
    print(f"CLIP input pixels: {pixels:.2e}, image embedding: {embedding:.2e}")
    assert pixels < 1e-5 and embedding < 1e-4


def test_image_latent(runs):
    vgen, comfy, _ = runs
    ours = node(comfy, "9")["0.0.samples"] * SCALE
    theirs = vgen["image_latent"]
    err = rel(ours.reshape(theirs.shape), theirs)
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
    check_unet_calls(comfy, vgen)


def test_cfg_each_step(runs):
    vgen, comfy, _ = runs
    check_guided_steps(comfy, vgen)


def test_final_latent(runs):
    """Both end with the last DDIM step to alphas_cumprod[0] (the sampler's final_step 'original')."""
    vgen, comfy, _ = runs
    check_final_latent(comfy, vgen, "11")


def test_frames(runs):
    """The decode node's frames against VGen's decoded video, as floats and as the 8-bit frames it writes."""
    vgen, comfy, _ = runs
    check_frames(comfy, vgen, "12")

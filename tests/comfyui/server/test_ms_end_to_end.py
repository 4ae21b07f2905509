"""The base stage of the shipped MS-Image2Video cascade, run by a real ComfyUI server, against ModelScope's own
MS-Image2Video pipeline (``modelscope.pipelines`` ``image-to-video``), stage by stage, on the same random full-size
weights.

ModelScope is not a dependency of the pack: ComfyUI's Python needs it and what its pipeline imports
(``pip install --no-deps modelscope==1.40.2 modelscope_hub open_clip_torch==2.0.2 ftfy easydict addict simplejson
python-dateutil six cryptography cffi pycparser``); without them the tests skip, as in CI. About 10 minutes and
12 GB of memory on a 2-core CPU. Nothing is downloaded.

1. ``ms_inference.py make`` writes a model folder as the hub's: ``configuration.json`` (sized small through its
   ``model_cfg``: latent 8x16, 4 frames; fps 8 and seed 666 as the workflow's) and random weights at the real
   architecture (ModelScope's ``Img2VidSDUNet`` checkpoint, open_clip's ViT-H-14, the SD2.1 autoencoder).
2. The pack loads the same UNet checkpoint file; its ``split-encoders`` command makes ComfyUI's CLIP vision and VAE
   files from the other two, as a user does with the release.
3. ``ms_inference.py infer`` runs ``ImageToVideoPipeline`` on the CPU and records every stage.
4. The base stage of workflows/api/ms_image2video_cascade.api.json (its loaders, Semantic Encode, Conditioning and
   Sampler, with the cascade's own decode node wired to the sampler) goes to a server's /prompt with only the file
   names, the image, and the size and frame count changed; the stage recorder records the same stages there.

The refine stage (MS-Vid2Vid-XL) is not run against ModelScope's ``VideoToVideo``: it resizes every input to
1280x720 in its code and runs its UNet in fp16 under CUDA autocast, which a CPU cannot do at any testable size; its
UNet and solvers are compared in tests/core (see the README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import REPO
from e2e_support import (check_final_latent, check_frames, check_guided_steps, check_unet_calls, node,
                         reference_python, rel, run, serve_and_record, split_encoders, work_dir)
from workflow_utils import HEADLESS, load_api_workflow

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "ms_inference.py"
WORKFLOW = REPO / "workflows" / "api" / "ms_image2video_cascade.api.json"
BASE_NODES = ("1", "3", "4", "5", "8", "10", "11")  # the cascade's base stage
DECODE, SAMPLER = "17", "11"
WIDTH, HEIGHT, FRAMES = 128, 64, 4
INSTALL = ("pip install --no-deps modelscope==1.40.2 modelscope_hub open_clip_torch==2.0.2 ftfy easydict addict "
           "simplejson python-dateutil six cryptography cffi pycparser")


def base_stage(cascade: dict) -> dict:
    """The cascade's base stage as a graph of its own: its nodes, and its decode node (then video save) reading the
    base sampler's latent instead of the refiner's."""
    graph = {k: json.loads(json.dumps(cascade[k])) for k in BASE_NODES + (DECODE, "18", "19")}
    graph[DECODE]["inputs"]["samples"] = [SAMPLER, 0]
    graph["19"]["inputs"]["filename_prefix"] = "video/ms_image2video_base"
    return graph


@pytest.fixture(scope="module")
def cascade() -> dict:
    return load_api_workflow(WORKFLOW)


@pytest.fixture(scope="module")
def runs(comfyui_install, cascade, tmp_path_factory):
    """Both records: (ModelScope's, the server's, the submitted graph). I2VGEN_E2E_DIR keeps the weights."""
    python = reference_python(comfyui_install, "modelscope.utils.config, open_clip, easydict, addict", INSTALL)
    work = work_dir(tmp_path_factory, "ms_image2video")
    model_dir = work / "model"
    sampler = cascade[SAMPLER]["inputs"]
    settings = {"seed": sampler["seed"], "width": WIDTH, "height": HEIGHT, "frames": FRAMES,
                "fps": cascade["10"]["inputs"]["fps"], "steps": sampler["steps"], "cfg": sampler["cfg"]}
    run([python, SCRIPT, "make", model_dir, json.dumps(settings)], 1800)
    files = split_encoders(python, [model_dir / "open_clip_pytorch_model.bin", model_dir / "v2-1_512-ema-pruned.ckpt"],
                           work / "converted")
    image = model_dir / "ms_e2e_image.png"
    ms_out, stamp = work / "ms_record.pt", work / "ms_record.json"
    if not (ms_out.exists() and stamp.exists() and json.loads(stamp.read_text()) == settings):
        run([python, SCRIPT, "infer", model_dir, image, ms_out, json.dumps(settings)], 3600)
        stamp.write_text(json.dumps(settings))

    unet = model_dir / cascade["1"]["inputs"]["unet_name"]  # the workflow's own file name
    prompt = HEADLESS.apply_overrides(base_stage(cascade), image=image.name, sets=[
        f"3.clip_name={files['vision'].name}", f"4.vae_name={files['vae'].name}", f"10.width={WIDTH}",
        f"10.height={HEIGHT}", f"10.length={FRAMES}"])
    models = {"i2vgen": unet, "clip_vision": files["vision"], "vae": files["vae"]}
    comfy = serve_and_record(tmp_path_factory.mktemp("ms_e2e_server"), prompt, models, image)
    return torch.load(ms_out, weights_only=False), comfy, prompt


def test_the_graph_is_the_cascades_base_stage(runs, cascade):
    ms, _comfy, prompt = runs
    changed = {(k, name) for k, n in base_stage(cascade).items() for name, value in n["inputs"].items()
               if prompt[k]["inputs"][name] != value}
    assert changed <= {("3", "clip_name"), ("4", "vae_name"), ("5", "image"), ("10", "width"), ("10", "height"),
                       ("10", "length")}, sorted(changed)
    # what ModelScope's pipeline uses is what the workflow says
    assert ms["config"]["guide_scale"] == prompt[SAMPLER]["inputs"]["cfg"]
    assert ms["config"]["ddim_timesteps"] == prompt[SAMPLER]["inputs"]["steps"]
    assert ms["config"]["target_fps"] == prompt["10"]["inputs"]["fps"]
    assert ms["config"]["resolution"][0] == prompt["8"]["inputs"]["square_size"]


def test_clip_pixels_and_image_embedding(runs):
    ms, comfy, _ = runs
    pixels = rel(comfy["clip_pixels"], ms["clip_pixels"])
    embedding = rel(node(comfy, "8")["0.0.image_embeds"], ms["image_embedding"])
    print(f"CLIP input pixels: {pixels:.2e}, image embedding: {embedding:.2e}")
    assert pixels < 1e-5 and embedding < 1e-4


def test_start_noise_with_the_offset_noise(runs):
    """ModelScope's build_noise: randn(noise) + 0.1 * randn(B, C, F, 1, 1), both from the seeded generator."""
    ms, comfy, _ = runs
    assert ms["config"]["noise_strength"] == 0.1
    assert len(comfy["noise"]) == 1
    err = (comfy["noise"][0] - ms["noise"]).abs().max().item()
    print(f"start noise (with ModelScope's offset noise): max abs {err:.1e}")
    assert err < 1e-6


def test_timesteps_and_each_unet_call(runs):
    ms, comfy, _ = runs
    check_unet_calls(comfy, ms)


def test_cfg_each_step(runs):
    ms, comfy, _ = runs
    check_guided_steps(comfy, ms)


def test_final_latent(runs):
    """Both end with the last DDIM step to alphas_cumprod[0] (the sampler's final_step 'original')."""
    ms, comfy, _ = runs
    check_final_latent(comfy, ms, SAMPLER)


def test_frames(runs):
    """The decode node's frames against ModelScope's decoded video, as floats and as the 8-bit frames it writes."""
    ms, comfy, _ = runs
    check_frames(comfy, ms, DECODE)

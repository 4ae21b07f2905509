"""What the end-to-end tests against the original code share: running the reference's script, serving a graph on a
real ComfyUI with the stage recorder, and the stage comparisons (UNet calls, guided steps, final latent, frames).

A reference record (vgen_inference.py, ms_inference.py) holds ``unet_calls`` ({t, branch, x, out}, cond then uncond
per step), ``steps`` ({t, x0, next}), ``final_latent``, ``frames_float`` ([F, 3, H, W] in [0, 1]) and
``frames_written`` (uint8); the server's record is stage_recorder/'s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, start_server, stop_server

HERE = Path(__file__).resolve().parent
RECORDER = HERE / "stage_recorder"
SCALE = 0.18215


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in float64."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def node(record: dict, node_id: str) -> dict:
    """The recorded outputs of graph node `node_id`."""
    hits = [v for k, v in record["nodes"].items() if k.split(":")[0] == node_id]
    assert hits, f"node {node_id} did not run; ran: {sorted(record['nodes'])}"
    return hits[0]


def run(cmd: list, timeout: float) -> None:
    """Run a command in the repository root; fail the test with its output if it fails."""
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def reference_python(comfyui_install, imports: str, install: str) -> Path:
    """ComfyUI's Python if it can import `imports`, else skip saying what to install."""
    _root, python = comfyui_install
    probe = subprocess.run([str(python), "-c", f"import {imports}"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"ComfyUI's Python lacks what the original code imports ({probe.stderr.strip().splitlines()[-1]});"
                    f" {install}")
    return python


def work_dir(tmp_path_factory, name: str) -> Path:
    """Where the random weights go: $I2VGEN_E2E_DIR/<name> (kept between runs), else a temporary folder."""
    root = os.environ.get("I2VGEN_E2E_DIR")
    if not root:
        return tmp_path_factory.mktemp(name)
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def split_encoders(python: Path, sources: list[Path], out: Path) -> dict[str, Path]:
    """``python -m i2vgen_core split-encoders`` on each source (kept if done): {"text"|"vision"|"vae": file}."""
    out.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if not any(p.name.startswith(src.stem + ".") for p in out.iterdir()):
            run([python, "-m", "i2vgen_core", "split-encoders", src, out, "--dtype", "fp16"], 1800)
    found = {kind: [p for p in out.iterdir() if p.name.endswith(f".{kind}.safetensors")]
             for kind in ("text", "vision", "vae")}
    return {kind: files[0] for kind, files in found.items() if len(files) == 1}


def serve_and_record(base: Path, prompt: dict, models: dict[str, Path], image: Path) -> dict:
    """Run `prompt` on a fresh server whose model folders hold `models` ({folder: file}) and whose input folder holds
    `image`, with the stage recorder on; the server's record."""
    for folder, path in models.items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        link = base / "models" / folder / path.name
        if not link.exists():
            os.symlink(path, link)
    (base / "input").mkdir(parents=True, exist_ok=True)
    shutil.copy2(image, base / "input" / image.name)
    record = base / "comfy_record.pt"
    server = start_server(base, extra_nodes=(RECORDER,), env={"I2VGEN_RECORD_STAGES": str(record)})
    try:
        result = server.client.run(prompt, timeout=3600)
    finally:
        stop_server(server)
    assert result.status == "success", f"{result.status}: {(result.error or {}).get('exception_message')}"
    return torch.load(record, weights_only=False)


def check_unet_calls(comfy: dict, ref: dict) -> dict:
    """Timesteps equal, and each UNet call's output per branch and its input within 1e-3 (the worst printed)."""
    theirs = [int(s["t"]) for s in ref["steps"]]
    ours = [c["t"] for c in comfy["unet_calls"]]
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    assert [round(float(t[0])) for t in ours] == theirs
    assert max(float((t - t.round()).abs().max()) for t in ours) < 1e-3
    worst = {"cond": 0.0, "uncond": 0.0, "input": 0.0}
    pairs = [ref["unet_calls"][i:i + 2] for i in range(0, len(ref["unet_calls"]), 2)]
    for call, pair in zip(comfy["unet_calls"], pairs):
        for r in pair:
            row = call["cond_or_uncond"].index(0 if r["branch"] == "cond" else 1)
            worst[r["branch"]] = max(worst[r["branch"]], rel(call["out"][row:row + 1], r["out"]))
            worst["input"] = max(worst["input"], rel(call["x"][row:row + 1], r["x"]))
    print("each UNet call, worst of", len(theirs), "steps:", {k: f"{v:.2e}" for k, v in worst.items()})
    assert max(worst.values()) < 1e-3, worst
    return worst


def check_guided_steps(comfy: dict, ref: dict) -> list[float]:
    """Per step, the guided clean prediction (ComfyUI's denoised after CFG) within 1e-3 of the reference's x0."""
    assert len(comfy["steps"]) == len(ref["steps"]), (len(comfy["steps"]), len(ref["steps"]))
    errs = [rel(ours["denoised"], r["x0"]) for ours, r in zip(comfy["steps"], ref["steps"])]
    print(f"guided x0 per step: first {errs[0]:.2e}, worst {max(errs):.2e}, last {errs[-1]:.2e}")
    assert max(errs) < 1e-3
    return errs


def check_final_latent(comfy: dict, ref: dict, sampler_id: str) -> float:
    """The sampler node's latent within 1e-4 of the reference's final latent (both end at alphas_cumprod[0]: the
    node's final_step 'original', its default)."""
    err = rel(node(comfy, sampler_id)["0.0.samples"] * SCALE, ref["final_latent"])
    print(f"final latent: {err:.2e}")
    assert err < 1e-4
    return err


def check_frames(comfy: dict, ref: dict, decode_id: str) -> tuple[float, int]:
    """The decode node's frames: as many as the reference wrote, within 1e-4 (max abs) of its decoded frames mapped
    to [0, 1] as its writer maps them, and within one 8-bit level of the frames it wrote."""
    ours = node(comfy, decode_id)["0.0"]  # IMAGE [frames, H, W, 3] in [0, 1]
    assert ours.shape[0] == ref["frames_written"].shape[0], "a different number of frames than the original writes"
    err = (ours - ref["frames_float"].movedim(1, -1)).abs().max().item()
    levels = ((ours * 255).to(torch.uint8).int() - ref["frames_written"].int()).abs().max().item()
    print(f"frames: max abs {err:.2e} of [0, 1]; the 8-bit frames differ by at most {levels} level(s)")
    assert err < 1e-4 and levels <= 1
    return err, levels

"""The encoder path (ComfyUI's loaders + the pack's nodes) equals open_clip_torch, the original's encoder.

Runs ``encoder_checks.py`` inside COMFYUI_PYTHON (no server). The comparisons need ``open_clip_torch`` importable
there (it is never a dependency of this package: ``$COMFYUI_PYTHON -m pip install open_clip_torch``) and skip with
the reason otherwise; the VAE-file and long-prompt checks run without it.
The checks build a full-size random OpenCLIP ViT-H/14 (ComfyUI's loaders accept only the real shapes): about 8 GB of
temporary files and a few minutes on a CPU. Every check's figures are printed (``pytest -s`` or ``-rP`` shows them).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "encoder_checks.py"
CHECKS = (
    "conversion_matches_transformers",
    "tokenization_matches_open_clip",
    "vae_release_files_load",
    "long_prompts_reach_the_unet_as_77_tokens",
    "full_size_reference_built",
    "format_hub_fp32",
    "format_vgen_bin",
    "format_hub_fp16_file_comfy_default",
    "format_vgen_bin_split",
)


@pytest.fixture(scope="module")
def encoder_results(comfyui_install, repo_root, tmp_path_factory) -> dict:
    root, python = comfyui_install
    work = tmp_path_factory.mktemp("encoders")
    proc = subprocess.run([str(python), str(SCRIPT), str(root), str(repo_root), str(work)], capture_output=True,
                          text=True, timeout=3000, cwd=str(repo_root))
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            results[item["name"]] = item
    if not results:
        pytest.fail(f"encoder_checks.py produced no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return results


@pytest.mark.parametrize("name", CHECKS)
def test_encoders(encoder_results, name):
    assert name in encoder_results, f"check {name} did not run; ran: {sorted(encoder_results)}"
    item = encoder_results[name]
    if item.get("skip"):
        pytest.skip(item["skip"])
    print(json.dumps(item["detail"], indent=1))
    assert item["ok"], item["detail"]

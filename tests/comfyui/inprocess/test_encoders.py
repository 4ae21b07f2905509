"""The encoder path (ComfyUI's loaders + the pack's nodes) equals open_clip_torch, the original's encoder.

Runs ``encoder_checks.py`` inside COMFYUI_PYTHON (no server). The comparisons need ``open_clip_torch`` importable
there (it is never a dependency of this package: ``$COMFYUI_PYTHON -m pip install open_clip_torch``) and skip with
the reason otherwise; the VAE-file and long-prompt checks run without it.
The checks build a full-size random OpenCLIP ViT-H/14 (ComfyUI's loaders accept only the real shapes): about 14 GB of
temporary files (deleted at the end), up to 10 GB resident per process (memory-mapped weight files included) and
15-30 minutes on a 2-core CPU.
Every check's figures are printed (``pytest -s`` or ``-rP`` shows them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from check_runner import run_check_script

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
    results = {}
    try:
        _run_groups(python, root, repo_root, work, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # about 14 GB of full-size weights
    return results


def _run_groups(python, root, repo_root, work, results: dict) -> None:
    # the reference run first, then one process per file format (a clean heap each: full-size towers are large)
    for group in (CHECKS[:5], *[(name,) for name in CHECKS[5:]]):
        results.update(run_check_script(python, SCRIPT, root, repo_root, work, ",".join(group), timeout=3000))


@pytest.mark.parametrize("name", CHECKS)
def test_encoders(encoder_results, name):
    assert name in encoder_results, f"check {name} did not run; ran: {sorted(encoder_results)}"
    item = encoder_results[name]
    if item.get("skip"):
        pytest.skip(item["skip"])
    print(json.dumps(item["detail"], indent=1))
    assert item["ok"], item["detail"]

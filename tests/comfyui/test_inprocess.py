"""Numerical checks of the ComfyUI integration inside ComfyUI's Python, no server (see inprocess_checks.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "inprocess_checks.py"
CHECKS = (
    "schedules_match_comfyui_equivalents",
    "ddim_uniform_gives_original_timesteps",
    "refine_sigmas_start_at_strength",
    "guidance_rescale_matches_original_formula",
    "comfy_ddim_equals_core_ddim",
    "cond_and_uncond_are_batched_into_one_call",
    "lora_keys_and_weight_patches_reach_the_unet",
    "fp8_storage_computes_like_fp8_rounded_weights",
    "loader_builds_from_comfy_ops_and_reports_bad_choices",
    "loader_loads_linked_files_and_names_broken_ones",
    "memory_manager_loads_and_frees_the_model",
    "every_video_node_rejects_image_latents",
)


@pytest.fixture(scope="module")
def check_results(comfyui_install, repo_root, tmp_path_factory) -> dict:
    import sys

    root, python = comfyui_install
    demo = tmp_path_factory.mktemp("demo_unets")
    subprocess.run([sys.executable, "-m", "i2vgen_core.demo_weights", str(demo), "--unets-only"], check=True,
                   capture_output=True, timeout=600, cwd=str(repo_root))
    proc = subprocess.run([str(python), str(SCRIPT), str(root), str(repo_root), str(demo)], capture_output=True,
                          text=True, timeout=900, cwd=str(repo_root))
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            results[item["name"]] = item
    if not results:
        pytest.fail(f"inprocess_checks.py produced no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return results


@pytest.mark.parametrize("name", CHECKS)
def test_inprocess(check_results, name):
    assert name in check_results, f"check {name} did not run; ran: {sorted(check_results)}"
    item = check_results[name]
    assert item["ok"], item["detail"]

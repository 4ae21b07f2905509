"""ComfyUI's model-patching nodes (FreeU, FreeU_V2, PAG, ToMe, HyperTile, EasyCache, LazyCache, context windows,
attention selection and overrides) take effect on the pack's MODEL; SelfAttentionGuidance is refused with a sentence.

Runs model_patch_checks.py inside ComfyUI's Python (no server), the way test_inprocess.py does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "model_patch_checks.py"
CHECKS = (
    "unpatched_comfy_path_equals_core_forward",
    "freeu_and_freeu_v2_take_effect",
    "perturbed_attention_guidance_takes_effect",
    "tome_and_hypertile_take_effect",
    "easycache_skips_steps_and_lazycache_works",
    "context_windows_on_frames_work_for_every_variant",
    "attention_goes_through_comfyui_selection_and_overrides",
    "self_attention_guidance_is_refused_with_a_sentence",
)


@pytest.fixture(scope="module")
def results(comfyui_install, repo_root, tmp_path_factory) -> dict:
    root, python = comfyui_install
    demo = tmp_path_factory.mktemp("demo_unets")
    subprocess.run([sys.executable, "-m", "i2vgen_core.demo_weights", str(demo), "--unets-only"], check=True,
                   capture_output=True, timeout=600, cwd=str(repo_root))
    proc = subprocess.run([str(python), str(SCRIPT), str(root), str(repo_root), str(demo)], capture_output=True,
                          text=True, timeout=1800, cwd=str(repo_root))
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            found[item["name"]] = item
    if not found:
        pytest.fail(f"model_patch_checks.py produced no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return found


@pytest.mark.parametrize("name", CHECKS)
def test_model_patch(results, name):
    assert name in results, f"check {name} did not run; ran: {sorted(results)}"
    item = results[name]
    assert item["ok"], item["detail"]

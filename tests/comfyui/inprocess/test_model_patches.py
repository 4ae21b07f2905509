"""ComfyUI's model-patching nodes (FreeU, FreeU_V2, PAG, ToMe, HyperTile, EasyCache, LazyCache, context windows,
attention selection and overrides) take effect on the pack's MODEL; SelfAttentionGuidance is refused with a sentence;
the model's conds stay whole in context windows as newer cores cut them (docs/comfyui_compat.md).

Runs model_patch_checks.py inside ComfyUI's Python (no server), the way test_inprocess.py does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from check_runner import run_check_script, write_demo_unets

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
    "conds_stay_whole_in_every_context_window",
    "loader_gives_newer_cores_a_way_to_reload_the_model",
)


@pytest.fixture(scope="module")
def results(comfyui_install, repo_root, tmp_path_factory) -> dict:
    root, python = comfyui_install
    demo = tmp_path_factory.mktemp("demo_unets")
    write_demo_unets(demo)
    return run_check_script(python, SCRIPT, root, repo_root, demo, timeout=1800)


@pytest.mark.parametrize("name", CHECKS)
def test_model_patch(results, name):
    assert name in results, f"check {name} did not run; ran: {sorted(results)}"
    item = results[name]
    assert item["ok"], item["detail"]

"""Numerical checks of the ComfyUI integration inside ComfyUI's Python, no server (see inprocess_checks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from check_runner import run_check_script, write_demo_unets

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "inprocess_checks.py"
CHECKS = (
    "schedules_match_comfyui_equivalents",
    "ddim_uniform_gives_original_timesteps",
    "detail_encode_draws_from_the_vae_posterior",
    "refine_sigmas_start_at_strength",
    "guidance_rescale_matches_original_formula",
    "comfy_ddim_equals_core_ddim",
    "pack_sampler_starts_from_plain_noise",
    "ms_image2video_sampler_starts_with_the_original_offset_noise",
    "refine_sampler_starts_like_ms_vid2vid_xl",
    "text_encode_tokens_equal_open_clip",
    "cond_and_uncond_are_batched_into_one_call",
    "lora_keys_and_weight_patches_reach_the_unet",
    "fp8_storage_computes_like_fp8_rounded_weights",
    "loader_builds_from_comfy_ops_and_reports_bad_choices",
    "loader_loads_linked_files_and_names_broken_ones",
    "memory_manager_loads_and_frees_the_model",
    "every_video_node_rejects_image_latents",
    "memory_estimate_follows_the_device",
)


#: Whole sampling runs (up to 50 steps), run in a process of their own with a longer limit.
SLOW = ("pack_sampler_starts_from_plain_noise", "refine_sampler_starts_like_ms_vid2vid_xl")


@pytest.fixture(scope="module")
def check_results(comfyui_install, repo_root, tmp_path_factory) -> dict:
    root, python = comfyui_install
    demo = tmp_path_factory.mktemp("demo_unets")
    write_demo_unets(demo)
    fast = ",".join(name for name in CHECKS if name not in SLOW)
    results = run_check_script(python, SCRIPT, root, repo_root, demo, fast)
    return {**results, **run_check_script(python, SCRIPT, root, repo_root, demo, ",".join(SLOW), timeout=1800)}


@pytest.mark.parametrize("name", CHECKS)
def test_inprocess(check_results, name):
    assert name in check_results, f"check {name} did not run; ran: {sorted(check_results)}"
    item = check_results[name]
    assert item["ok"], item["detail"]

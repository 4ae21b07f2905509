"""What the pack does for ComfyUI cores newer than the one installed (docs/comfyui_compat.md), checked on the
installed one: runs core_compat_checks.py inside ComfyUI's Python (no server), the way test_model_patches.py does."""

from __future__ import annotations

from pathlib import Path

import pytest
from check_runner import run_check_script, write_demo_unets

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "core_compat_checks.py"
CHECKS = ("conds_stay_whole_in_every_context_window",)


@pytest.fixture(scope="module")
def results(comfyui_install, repo_root, tmp_path_factory) -> dict:
    root, python = comfyui_install
    demo = tmp_path_factory.mktemp("demo_unets")
    write_demo_unets(demo)
    return run_check_script(python, SCRIPT, root, repo_root, demo, timeout=900)


@pytest.mark.parametrize("name", CHECKS)
def test_core_compat(results, name):
    assert name in results, f"check {name} did not run; ran: {sorted(results)}"
    item = results[name]
    assert item["ok"], item["detail"]

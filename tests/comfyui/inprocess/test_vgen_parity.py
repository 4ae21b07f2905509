"""The pack's nodes against VGen's own I2VGen-XL code (the paper's release), inside ComfyUI's Python.

VGen is not a dependency and is never downloaded: point VGEN_PATH at a checkout of github.com/ali-vilab/VGen (only
its ``tools/modules/diffusions`` files are executed); without it these tests skip. See vgen_checks.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from check_runner import run_check_script, write_demo_unets

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "vgen_checks.py"
CHECKS = ("schedule_equals_vgen", "sampler_node_equals_vgen_ddim_loop", "unet_equals_vgen_unet_full_size",
          "detail_encode_and_video_decode_equal_vgen_autoencoder")


@pytest.fixture(scope="module")
def check_results(comfyui_install, repo_root, vgen_path, tmp_path_factory) -> dict:
    root, python = comfyui_install
    demo = tmp_path_factory.mktemp("demo_unets")
    write_demo_unets(demo)
    return run_check_script(python, SCRIPT, root, repo_root, demo, vgen_path, timeout=1800)


@pytest.mark.parametrize("name", CHECKS)
def test_vgen(check_results, name):
    assert name in check_results, f"check {name} did not run; ran: {sorted(check_results)}"
    result = check_results[name]
    print(name, result["detail"])
    assert result["ok"], result["detail"]

"""The latent_preview hook (nodes/preview.py) inside ComfyUI's Python, no server (see preview_inprocess.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

SCRIPT = Path(__file__).resolve().parent / "preview_inprocess.py"


@pytest.fixture(scope="module")
def got(comfyui_install, repo_root) -> dict:
    root, python = comfyui_install
    proc = subprocess.run([str(python), str(SCRIPT), str(root), str(repo_root)], capture_output=True, text=True,
                          timeout=600, cwd=str(repo_root))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        pytest.fail(f"preview_inprocess.py printed nothing (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def test_only_clients_that_asked_get_the_animated_previewer(got):
    assert got["hook_installed"]
    assert got["no_setting"] == "Latent2RGBPreviewer"  # API clients: ComfyUI's preview
    assert got["with_setting"] == "AnimatedPreviewer"
    assert got["old_frontend"] == "Latent2RGBPreviewer"  # no preview-metadata support: ComfyUI's preview
    assert got["other_format"] == "Latent2RGBPreviewer"  # other models untouched
    assert got["preview_method_none"] == "None"  # --preview-method none still means no previews


def test_one_sheet_of_every_frame_per_step(got):
    assert got["returned"] == "None"  # nothing for ComfyUI's own preview channel
    assert got["layout"] == {"node": "7", "prompt_id": "job-1", "frames": 6, "cols": 3, "rows": 2, "fps": 8,
                             "step": 1}
    assert got["layout_sid"] == "browser"
    assert got["image_kind"] == 4 and got["image_size"] == [3 * 14, 2 * 10]  # PREVIEW_IMAGE_WITH_METADATA
    assert got["metadata"]["display_node_id"] == "i2vgen-xl-preview" and got["metadata"]["node_id"] == "7"
    # the sheet carries no prompt id (newer frontends make a job's last preview with one its queue thumbnail) ...
    assert got["metadata"]["prompt_id"] is None
    # ... frame 0 alone does, under a display id no node has: the job's thumbnail is the first frame
    assert got["thumbnail_kind"] == 4 and got["thumbnail_size"] == [14, 10]
    assert got["thumbnail_metadata"]["prompt_id"] == "job-1"
    assert got["thumbnail_metadata"]["display_node_id"] == "i2vgen-xl-thumbnail"
    assert got["image_latent_4d"] == "tuple"  # a 4-D latent goes to ComfyUI's previewer


def test_taesd_decodes_every_frame_as_a_batch(got):
    assert got["taesd_frames"] == [6, 80, 112, 3]

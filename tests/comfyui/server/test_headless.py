"""The documented headless ways in: workflows/headless_api.py and comfy-cli's `comfy run`, against a real server.

comfy-cli is optional: install it anywhere (`pip install comfy-cli` in any venv) and point COMFY_CLI at its `comfy`
executable (or have `comfy` on PATH); without it that test skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from workflow_utils import HEADLESS, REPO, expected_video  # tests/comfyui, on sys.path via conftest

CASCADE = REPO / "workflows" / "api" / "i2vgen_xl_cascade.api.json"


def _check_video(server, path, submitted):
    save = next(nid for nid, n in submitted.items() if n["class_type"] == "SaveVideo")
    want = expected_video(submitted, save)
    video = server.probe_video(path)
    assert (video["width"], video["height"], video["frames"]) == (want["width"], want["height"], want["frames"])


def test_headless_client_runs_the_cascade(comfy_server, tmp_path):
    """The README's command: upload the image, queue the smoke-sized cascade, follow it, download the mp4."""
    out = subprocess.run(
        [sys.executable, str(REPO / "workflows" / "headless_api.py"), str(CASCADE), "--server",
         comfy_server.client.base, "--image", str(REPO / "workflows" / "inputs" / "i2vgen_example.png"),
         "--smoke", "--seed", "11", "--wait-server", "30", "--out", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    files = [line for line in out.stdout.splitlines() if line.endswith(".mp4")]
    assert len(files) == 1, out.stdout
    submitted = HEADLESS.smoke_sized(json.loads(CASCADE.read_text()))
    _check_video(comfy_server, files[0], submitted)


def test_comfy_cli_run_workflow(comfy_server, tmp_path):
    """`comfy run --workflow X.api.json --wait` (comfy-cli) runs our API workflow on the same server."""
    comfy = os.environ.get("COMFY_CLI") or shutil.which("comfy")
    if not comfy:
        pytest.skip("comfy-cli not found: set COMFY_CLI to its `comfy` executable (pip install comfy-cli)")
    submitted = HEADLESS.apply_overrides(HEADLESS.smoke_sized(json.loads(CASCADE.read_text())), seed=12)
    path = tmp_path / "cascade.api.json"
    path.write_text(json.dumps(submitted))
    host, port = comfy_server.client.base.removeprefix("http://").split(":")
    out = subprocess.run([comfy, "--skip-prompt", "--no-enable-telemetry", "run", "--workflow", str(path),
                          "--host", host, "--port", port, "--wait", "--timeout", "1800"],
                         capture_output=True, text=True, timeout=1900, env={**os.environ, "DO_NOT_TRACK": "1"})
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "completed" in out.stdout, out.stdout[-2000:]
    videos = sorted((comfy_server.output_dir).rglob("i2vgen_xl_cascade_*.mp4"), key=lambda p: p.stat().st_mtime)
    _check_video(comfy_server, videos[-1], submitted)

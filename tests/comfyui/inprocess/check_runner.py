"""Runs the in-process check scripts (inprocess_checks.py and the scripts built on its runner) in ComfyUI's Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_check_script(python: Path, script: Path, *args, timeout: float = 900) -> dict:
    """Run an in-process check script (inprocess_checks.run_checks prints one JSON object per check) in ComfyUI's
    Python; {check name: its result}, or fail the calling test with the script's stderr when it printed none."""
    proc = subprocess.run([str(python), str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            results[item["name"]] = item
    if not results:
        pytest.fail(f"{script.name} {' '.join(map(str, args[3:]))} produced no results (exit {proc.returncode}):\n"
                    f"{proc.stderr[-4000:]}")
    return results


def write_demo_unets(dest: Path) -> None:
    """Tiny demo UNets only (`python -m i2vgen_core demo-weights DEST --unets-only`)."""
    subprocess.run([sys.executable, "-m", "i2vgen_core", "demo-weights", str(dest), "--unets-only"], check=True,
                   capture_output=True, timeout=600, cwd=str(REPO))

"""The one GPU script, `bench/gpu.py --suite`, end to end on CPU with tiny models (`--tiny`): every section but the
slow compile runs without error and writes its figures, so the rare GPU session does not find a broken script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_suite_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "suite.json"
    sections = "step,fp8_layer_error,base_run,refine,long_video_memory,attention_flex"
    # without the Triton interpreter that tests/conftest.py turns on: the suite's CPU path uses no Triton kernels
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--suite", "--tiny", "--only", sections,
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["skipped"] == {}, results["skipped"]
    ran = set(results["sections_s"])
    assert {"step_float32", "fp8_layer_error", "base_run_plain", "refine", "long_video_memory",
            "attention_flex"} <= ran, ran
    rows = results["long_video_memory"]["rows"]
    assert [(r["frames"], r["windows"]) for r in rows] == [(f, w) for f in (2, 4, 6, 8) for w in (True, False)]
    assert all("error" not in r for r in rows)

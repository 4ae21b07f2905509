"""Cold-start cost of the cascade workflow on the CPU with demo weights: time and the server's peak memory.

Runs in a server of its own (this module starts before the shared one and stops it at the end), so the first run
includes loading every model. Sizes/steps are shrunk as in test_workflows.py; the numbers are printed as
``[metrics]`` lines (pytest -s) and recorded as junit properties.
"""

from __future__ import annotations

import pytest

from workflow_utils import check_saved_videos, load_api_workflow, shrink  # tests/comfyui, on sys.path via conftest

pytestmark = pytest.mark.comfyui


def test_cascade_cold_then_warm(fresh_comfy_server, repo_root, record_property):
    path = repo_root / "workflows" / "api" / "i2vgen_xl_cascade.api.json"
    if not path.exists():
        pytest.skip("workflows/api/i2vgen_xl_cascade.api.json is not there yet")
    server = fresh_comfy_server
    submitted = shrink(load_api_workflow(path))
    cold = server.client.run(submitted, timeout=1800)
    assert cold.status == "success", (cold.error or {}).get("exception_message")
    cold_peak = server.peak_rss_mb()
    check_saved_videos(server, cold, submitted, path.name)

    for node in submitted.values():  # new seeds: the samplers and everything after them run again
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] += 1
    server.reset_peak_rss()
    warm = server.client.run(submitted, timeout=1800)
    assert warm.status == "success", (warm.error or {}).get("exception_message")
    warm_peak = server.peak_rss_mb()
    check_saved_videos(server, warm, submitted, path.name)

    for key, value in (("cold_seconds", cold.seconds), ("cold_peak_rss_mib", cold_peak),
                       ("warm_seconds", warm.seconds), ("warm_peak_rss_mib", warm_peak)):
        record_property(key, round(value, 1) if value is not None else None)
    print(f"\n[metrics] {path.name} shrunk (cold server, models loaded in the run): {cold.seconds:.1f} s, "
          f"peak RSS since start {cold_peak:.0f} MiB; warm rerun (new seeds): {warm.seconds:.1f} s, "
          f"peak RSS {warm_peak:.0f} MiB\n[metrics]   slowest nodes cold: {cold.slowest(submitted)}; "
          f"warm: {warm.slowest(submitted)}")

"""Every workflows/api/*.api.json runs in a real ComfyUI server on the demo weights and writes the video it asks for.

Sizes are shrunk before submitting (the demo VAE and CLIP encoders are full size and run on the CPU): pixel sizes
/10 (at least 64, refiner-valid sizes stay refiner-valid), frame counts /8 (at least 2), sampler steps to 2. The
check is then that the saved video has exactly the frame count and size the submitted graph requests.
"""

from __future__ import annotations

import pytest

from workflow_utils import check_saved_videos, load_api_workflow, shrink  # tests/comfyui, put on sys.path by conftest

pytestmark = pytest.mark.comfyui


def test_workflow_runs_and_writes_the_requested_video(comfy_server, workflow_path, record_property):
    if workflow_path is None:
        pytest.skip("workflows/ has no *.api.json yet")
    prompt = load_api_workflow(workflow_path)
    assert prompt, f"{workflow_path.name} holds no API-format nodes"
    submitted = shrink(prompt)
    for node in submitted.values():
        name = node["inputs"].get("image") if node["class_type"] == "LoadImage" else None
        if isinstance(name, str):
            assert (comfy_server.input_dir / name).exists(), \
                f"{workflow_path.name} loads {name!r}, which is not shipped in workflows/inputs/"

    comfy_server.client.post("/free", {"unload_models": True, "free_memory": True})
    comfy_server.reset_peak_rss()
    result = comfy_server.client.run(submitted, timeout=1800)
    assert result.status == "success", (f"{workflow_path.name}: {result.status} "
                                        f"{(result.error or {}).get('exception_message')}\n"
                                        f"{''.join((result.error or {}).get('traceback', []))[-3000:]}")
    peak = comfy_server.peak_rss_mb()
    record_property("seconds", round(result.seconds, 1))
    record_property("peak_rss_mib", peak)
    print(f"\n[metrics] {workflow_path.name} (warm server): {result.seconds:.1f} s on CPU, peak RSS {peak:.0f} MiB"
          f" (slowest: {result.slowest(submitted, 3)})")
    check_saved_videos(comfy_server, result, submitted, workflow_path.name)

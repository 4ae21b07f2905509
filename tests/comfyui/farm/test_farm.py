"""The render farm (workflows/farm.py) on real ComfyUI servers: 6 smoke-sized jobs of the cheapest shipped workflow
on 2 CPU workers with the demo weights. The driver is killed mid-run and the command run again; in that rerun one
worker's ComfyUI server is killed mid-job. Every job ends with exactly one video, no ComfyUI process outlives its
run, and a third run renders nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import PACK_NAME, REPO, comfyui_paths, pack_config, pack_server_args, probe_video
from workflow_utils import HEADLESS, expected_video

WORKFLOW = REPO / "workflows" / "api" / "i2vgen_xl_image_to_video.api.json"
IMAGE = REPO / "workflows" / "inputs" / "i2vgen_example.png"
JOBS = 6
TIMEOUT_S = 1500  # bounds a hang on a loaded 2-core machine; not a measurement


def servers_of(marker: str) -> list[tuple[int, int]]:
    """(pid, port) of every live ComfyUI process whose command line holds `marker` (this test's config file)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if proc.name.isdigit() and "main.py" in argv and any(marker in a for a in argv) and state != "Z":
            found.append((int(proc.name), int(argv[argv.index("--port") + 1])))
    return found


def busy(port: int) -> bool:
    """Whether a ComfyUI server is running a prompt right now (GET /queue)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/queue", timeout=5) as r:
            return bool(json.loads(r.read()).get("queue_running"))
    except OSError:
        return False


def wait_until(check, timeout: float, what: str):
    """Poll until check() returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def farm_setup(tmp_path_factory):
    """A jobs file, the farm command line with ComfyUI's options for this package and the demo weights."""
    root, python = comfyui_paths()
    pytest.importorskip("ray", reason="the farm needs ray (pip install -e \".[farm]\"; it is in the test extra)")
    base = tmp_path_factory.mktemp("farm")
    yaml_path, _ = pack_config(base)
    jobs = base / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"clip{n}", "image": str(IMAGE), "prompt": f"a calm lake {n}",
                                        "seed": n}) + "\n" for n in range(JOBS)))
    cmd = [sys.executable, str(REPO / "workflows" / "farm.py"), str(jobs), "--workflow", str(WORKFLOW),
           "--out", str(base / "out"), "--comfyui", str(root), "--python", str(python), "--cpu", "--workers", "2",
           "--smoke", "--retries", "3"] + [f"--comfyui-arg={a}" for a in pack_server_args(yaml_path)]
    try:
        yield cmd, base / "out", str(yaml_path), python
    finally:
        link = base / "custom_nodes" / PACK_NAME
        if link.is_symlink():
            link.unlink()


def test_farm_survives_a_killed_driver_and_a_killed_server(farm_setup):
    cmd, out, marker, python = farm_setup
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(list(out.glob("*.mp4"))) >= 2, TIMEOUT_S, "two videos")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    assert len(kept) < JOBS
    wait_until(lambda: not servers_of(marker), 120, "the servers to die with the killed driver")

    rerun = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid, _ = wait_until(lambda: next((s for s in servers_of(marker) if busy(s[1])), None), TIMEOUT_S,
                            "a server running a job")
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        stdout, stderr = rerun.communicate(timeout=TIMEOUT_S)
    finally:
        if rerun.poll() is None:
            rerun.kill()
    assert rerun.returncode == 0, stderr[-4000:]
    assert not servers_of(marker)

    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == [f"clip{n}" for n in range(JOBS)]  # one line per job
    assert all(r["status"] == "ok" for r in lines)
    assert any(r["attempts"] == 2 for r in lines), lines  # the killed server's job, on a fresh server
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4") if p.name in kept} == kept
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"clip{n}.mp4" for n in range(JOBS)]
    assert not list(out.glob(".*.part"))
    want = expected_video(HEADLESS.smoke_sized(json.loads(WORKFLOW.read_text())), "14")
    for n in range(JOBS):
        video = probe_video(python, out / f"clip{n}.mp4")
        assert (video["width"], video["height"]) == (want["width"], want["height"])
        assert video["frames"] in (want["frames"], want["frames"] - want["may_drop_last"])

    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    third = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"0 job(s) run, {JOBS} already done" in third.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == before

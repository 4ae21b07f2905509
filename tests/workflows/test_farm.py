"""The render farm (workflows/farm.py) on a local Ray cluster, with a stand-in ComfyUI
(tests/support/fake_comfyui/main.py) started by the farm's own server-start code: job keys, atomic output, resume
after a killed driver, retries when a server or a worker dies, ComfyUI's errors passed through, and a run over two Ray
nodes. No real ComfyUI needed."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FARM = REPO / "workflows" / "farm.py"
FAKE = REPO / "tests" / "support" / "fake_comfyui"
WORKFLOW = REPO / "workflows" / "api" / "i2vgen_xl_image_to_video.api.json"
TIMEOUT_S = 600  # a loaded 2-core machine starts Ray slowly; these bound a hang, they are not measurements


def _load_farm():
    """workflows/farm.py, imported by path (it is a script)."""
    spec = importlib.util.spec_from_file_location("_i2vgen_farm", FARM)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


farm = _load_farm()


# ------------------------------------------------------------------------------------------------ helpers
def write_jobs(folder: Path, jobs: list[dict]) -> Path:
    """A jobs file with one small distinct "image" per job (the stand-in server only hashes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, job in enumerate(jobs):
        (folder / job["image"]).write_bytes(f"image {n} {job['image']}".encode())
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def farm_command(jobs: Path, out: Path, state: Path, *extra: str) -> list[str]:
    """The documented command line, with the stand-in ComfyUI and this Python."""
    return [sys.executable, str(FARM), str(jobs), "--workflow", str(WORKFLOW), "--out", str(out),
            "--comfyui", str(FAKE), "--python", sys.executable, "--cpu", "--workers", "2", "--smoke",
            f"--comfyui-arg=--fake-state={state}", "--comfyui-arg=--fake-seconds=0.3", *extra]


def run_farm(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run the farm to the end."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO)


def results(out: Path) -> dict[str, dict]:
    """results.jsonl by id; fails on a second line for the same id."""
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_id = {rec["id"]: rec for rec in lines}
    assert len(by_id) == len(lines), "one line per job"
    return by_id


def renders(state: Path, kind: str = "done") -> list[str]:
    """The texts the stand-in servers started / finished, one entry per render."""
    log = state / "renders.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [line.split("\t")[2].split(" | ")[0] for line in lines if line.startswith(kind + "\t")]


def server_pids(state: Path) -> list[int]:
    """Every stand-in server process ever started for this test."""
    return [int(p.stem) for p in (state / "servers").glob("*.json")]


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(check, timeout: float = 120, what: str = "condition"):
    """Poll until check() returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def busy_server(state: Path) -> int | None:
    """A live stand-in server that has started a job and not finished it."""
    log = state / "renders.log"
    last = {}
    for line in (log.read_text().splitlines() if log.is_file() else []):
        kind, pid = line.split("\t")[:2]
        last[int(pid)] = kind
    return next((pid for pid, kind in last.items() if kind == "start" and alive(pid)), None)


def nodes_so_far(out: Path) -> set[str]:
    """The Ray nodes of the workers that have saved a video (results.jsonl as written so far)."""
    path = out / "results.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return {json.loads(line)["worker"].split("@")[1] for line in lines if line.endswith("}")}


def check_video(out: Path, job_id: str, job: dict, folder: Path) -> None:
    """The video of a job holds that job's prompt, seed and image."""
    import hashlib

    video = json.loads((out / f"{job_id}.mp4").read_text())
    assert video["text"].split(" | ")[0] == job["prompt"]
    if "seed" in job:
        assert video["seed"] == job["seed"]
    assert video["image_sha256"] == hashlib.sha256((folder / job["image"]).read_bytes()).hexdigest()


def no_part_files(out: Path) -> bool:
    """No half-written file is left in the output folder."""
    return not list(out.glob(".*.part"))


# ------------------------------------------------------------------------------------------------ no Ray
def test_job_ids_are_stable_and_explicit_ids_win(tmp_path):
    a = {"image": "a.png", "prompt": "x", "seed": 1, "set": {"11.steps": 3}}
    same = {"set": {"11.steps": 3}, "seed": 1, "prompt": "x", "image": "a.png"}
    assert farm.derived_id(a) == farm.derived_id(same)
    assert farm.derived_id(a) != farm.derived_id({**a, "seed": 2})
    path = write_jobs(tmp_path, [a, {"id": "mine", "image": "b.png"}])
    jobs = farm.read_jobs(path)
    assert [j.id for j in jobs] == [farm.derived_id(a), "mine"]
    assert jobs[0].image == tmp_path / "a.png" and jobs[0].set == {"11.steps": 3}


@pytest.mark.parametrize("line, message", [
    ({"prompt": "no image"}, "\"image\""),
    ({"image": "missing.png"}, "does not exist"),
    ({"image": "a.png", "sed": 1}, "unknown key"),
    ({"image": "a.png", "seed": "1"}, "integer"),
    ({"id": "../x", "image": "a.png"}, "cannot name a file"),
    ({"image": "a.png", "set": {"steps": 3}}, "NODE_ID.INPUT"),
])
def test_bad_jobs_are_refused_with_the_line(tmp_path, line, message):
    (tmp_path / "a.png").write_bytes(b"x")
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(farm.headless.UsageError, match=message) as err:
        farm.read_jobs(path)
    assert f"{path}:1" in str(err.value)


def test_duplicate_jobs_are_refused(tmp_path):
    path = write_jobs(tmp_path, [{"image": "a.png", "seed": 1}, {"image": "a.png", "seed": 1}])
    with pytest.raises(farm.headless.UsageError, match="also on line 1"):
        farm.read_jobs(path)


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "job.mp4"
    farm.write_atomically(target, b"video")
    assert target.read_bytes() == b"video" and no_part_files(tmp_path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(farm.os, "replace", broken_replace)
    with pytest.raises(OSError):
        farm.write_atomically(tmp_path / "other.mp4", b"video")
    assert not (tmp_path / "other.mp4").exists() and no_part_files(tmp_path)


def test_job_graph_is_headless_api_graph(tmp_path):
    """The farm changes the graph with headless_api's own code: the same overrides, the same --smoke."""
    path = write_jobs(tmp_path, [{"image": "a.png", "prompt": "a cat", "negative": "dull", "seed": 7,
                                  "set": {"11.steps": 1, "6.text": "text set"}}])
    workflow = json.loads(WORKFLOW.read_text())
    got = farm.job_prompt(workflow, farm.read_jobs(path)[0], smoke=True)
    want = farm.headless.apply_overrides(farm.headless.smoke_sized(workflow), text="a cat", negative="dull", seed=7,
                                         sets=["11.steps=1", "6.text=text set"])
    assert got == want


# ------------------------------------------------------------------------------------------------ on Ray
def test_faults_outputs_and_rerun(tmp_path):
    """Two workers: good jobs, a server killed once mid-job, one killed every time, a validation error and a node
    error; then the same command again renders only what has no video."""
    jobs = [{"id": "a", "image": "a.png", "prompt": "first", "seed": 1},
            {"image": "b.png", "prompt": "second", "seed": 2},
            {"id": "c", "image": "c.png", "prompt": "third", "seed": 3, "set": {"11.steps": 1}},
            {"id": "once", "image": "d.png", "prompt": "killed once @die-once"},
            {"id": "always", "image": "e.png", "prompt": "killed always @die"},
            {"id": "invalid", "image": "f.png", "prompt": "rejected @invalid"},
            {"id": "raises", "image": "g.png", "prompt": "node fails @raise"}]
    folder, out, state = tmp_path / "jobs", tmp_path / "out", tmp_path / "state"
    cmd = farm_command(write_jobs(folder, jobs), out, state, "--retries", "2")
    first = run_farm(cmd)
    assert first.returncode == 1, first.stderr[-3000:]
    res = results(out)
    b_id = farm.derived_id(jobs[1])
    assert {k: v["status"] for k, v in res.items()} == {
        "a": "ok", b_id: "ok", "c": "ok", "once": "ok", "always": "failed", "invalid": "failed", "raises": "failed"}
    assert res["once"]["attempts"] == 2 and res["always"]["attempts"] == 2
    assert res["invalid"]["attempts"] == 1 and res["raises"]["attempts"] == 1
    assert "killed by SIGKILL" in res["always"]["error"]
    assert "Value smaller than min" in res["invalid"]["error"]
    assert "fake sampler failure" in res["raises"]["error"]
    for job in jobs[:4]:
        job_id = job.get("id", b_id)
        assert res[job_id]["output"] == str(out / f"{job_id}.mp4")
        check_video(out, job_id, job, folder)
        assert res[job_id]["worker"].startswith(("w0@", "w1@"))
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{j.get('id', b_id)}.mp4" for j in jobs[:4])
    assert no_part_files(out)
    assert "failed: always" in first.stdout and "jobs/min" in first.stdout

    servers = [json.loads(p.read_text()) for p in (state / "servers").glob("*.json")]
    assert len(servers) >= 4  # two workers, plus a fresh server after each kill
    scratch = {s["args"]["output_directory"] for s in servers}
    assert len(scratch) == 2  # each worker its own scratch folders (a fresh server reuses them)
    assert all("--cpu" in s["argv"] and s["args"]["fake_seconds"] == 0.3 for s in servers)  # --cpu, --comfyui-arg
    wait_until(lambda: not any(alive(pid) for pid in server_pids(state)), what="servers to stop")

    started_before = renders(state, "start")
    second = run_farm(cmd)
    assert second.returncode == 1, second.stderr[-3000:]
    again = renders(state, "start")[len(started_before):]
    assert not {"first", "second", "third", "killed once @die-once"} & set(again)  # they have their videos
    assert {"killed always @die", "node fails @raise"} <= set(again)  # failed jobs have none: they run again
    assert set(results(out)) == set(res)


def test_killed_driver_then_rerun_renders_only_what_is_missing(tmp_path):
    jobs = [{"id": f"j{n}", "image": f"{n}.png", "prompt": f"job {n} @slow"} for n in range(6)]
    folder, out, state = tmp_path / "jobs", tmp_path / "out", tmp_path / "state"
    cmd = farm_command(write_jobs(folder, jobs), out, state, "--comfyui-arg=--fake-slow=1.5")
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(list(out.glob("*.mp4"))) >= 2, timeout=TIMEOUT_S, what="two videos")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    kept = {p.stem for p in out.glob("*.mp4")}
    assert len(kept) < len(jobs)
    # servers die with their workers, which die with the driver that owns them
    wait_until(lambda: not any(alive(pid) for pid in server_pids(state)), timeout=120, what="servers to die")

    started_before = len(renders(state, "start"))
    rerun = run_farm(cmd)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = renders(state, "start")[started_before:]
    assert not {f"job {n} @slow" for n in range(6) if f"j{n}" in kept} & set(again)
    res = results(out)
    assert set(res) == {j["id"] for j in jobs} and all(r["status"] == "ok" for r in res.values())
    for job in jobs:
        check_video(out, job["id"], job, folder)
    assert no_part_files(out)
    assert "already done" in rerun.stdout
    assert run_farm(cmd).returncode == 0 and len(renders(state, "start")) == started_before + len(again)


def test_two_ray_nodes_and_a_killed_worker(tmp_path):
    """A cluster of two Ray nodes on this machine (ray.cluster_utils.Cluster) joined with --address: both render;
    then one worker process is killed mid-job: Ray restarts it with a fresh server and the job runs again."""
    from ray.cluster_utils import Cluster

    jobs = [{"id": f"n{n}", "image": f"{n}.png", "prompt": f"node job {n} @slow"} for n in range(6)]
    folder, out, state = tmp_path / "jobs", tmp_path / "out", tmp_path / "state"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        cmd = farm_command(write_jobs(folder, jobs), out, state, "--address", cluster.address,
                           "--comfyui-arg=--fake-slow=2")
        driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: len(nodes_so_far(out)) == 2, timeout=TIMEOUT_S, what="a video from each node")
            victim = wait_until(lambda: busy_server(state), timeout=TIMEOUT_S, what="a server in mid-job")
            worker = int(Path(f"/proc/{victim}/stat").read_text().split(")")[-1].split()[1])  # its parent
            os.kill(worker, signal.SIGKILL)
            wait_until(lambda: not alive(victim), timeout=60, what="the server to die with its worker")
            stdout, stderr = driver.communicate(timeout=TIMEOUT_S)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == 0, stderr[-3000:]
    finally:
        cluster.shutdown()
    res = results(out)
    assert all(r["status"] == "ok" for r in res.values()) and set(res) == {j["id"] for j in jobs}
    assert any(r["attempts"] == 2 for r in res.values()), res
    for job in jobs:
        check_video(out, job["id"], job, folder)


def test_rayjob_manifest_runs_the_farm():
    """workflows/farm_rayjob.yaml is a KubeRay RayJob whose entrypoint is the farm on a shipped workflow."""
    import yaml  # comes with ray

    doc = yaml.safe_load((REPO / "workflows" / "farm_rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    entry = doc["spec"]["entrypoint"].split()
    assert entry[1].endswith("workflows/farm.py") and "--address" in entry
    workflow = entry[entry.index("--workflow") + 1]
    assert (REPO / "workflows" / "api" / Path(workflow).name).is_file()
    args = farm.build_parser().parse_args(entry[2:])
    assert args.address == "auto" and not args.cpu
    workers = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert doc["spec"]["rayClusterSpec"]["rayVersion"] in (REPO / "constraints.txt").read_text()

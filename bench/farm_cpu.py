"""The render farm's throughput on this CPU, smoke size, demo weights: jobs per minute with 1 and 2 workers, and the
time a killed ComfyUI server costs (the same jobs on 1 worker, once undisturbed and once with its server killed
mid-job). Each run is the documented command line of workflows/farm.py, timed from outside.

    python bench/farm_cpu.py --comfyui /work/ComfyUI --out bench/measured/farm_cpu_$(date +%F).json
    python bench/farm_cpu.py --print bench/measured/farm_cpu_2026-12-03.json

Needs ray in this Python (pip install -e ".[farm]") and the demo weights (I2VGEN_DEMO_MODELS, written on first use).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfyui" / "farm"))  # the farm test's process lookups, reused as is
sys.path.insert(0, str(REPO / "tests" / "comfyui"))  # the test servers' package config, reused as is
from conftest import PACK_NAME, pack_config, pack_server_args  # noqa: E402
from test_farm import busy, servers_of  # noqa: E402

WORKFLOW = REPO / "workflows" / "api" / "i2vgen_xl_image_to_video.api.json"
IMAGE = REPO / "workflows" / "inputs" / "i2vgen_example.png"


def farm_command(base: Path, out: Path, comfyui: str, python: str, workers: int, jobs: int) -> tuple[list[str], str]:
    """workflows/farm.py on `jobs` smoke jobs with `workers` CPU workers, loading only this package; the command and
    the config file that marks its servers' command lines."""
    yaml_path, _ = pack_config(base)
    jobs_file = base / f"jobs{jobs}.jsonl"
    jobs_file.write_text("".join(json.dumps({"id": f"b{n}", "image": str(IMAGE), "seed": n}) + "\n"
                                 for n in range(jobs)))
    return [sys.executable, str(REPO / "workflows" / "farm.py"), str(jobs_file), "--workflow", str(WORKFLOW),
            "--out", str(out), "--comfyui", comfyui, "--python", python, "--cpu", "--workers", str(workers),
            "--smoke"] + [f"--comfyui-arg={a}" for a in pack_server_args(yaml_path)], str(yaml_path)


def timed_run(cmd: list[str], out: Path, marker: str, kill_after_videos: int | None = None) -> dict:
    """Run the farm; optionally SIGKILL a busy server (its command line holds `marker`) once `kill_after_videos`
    videos exist. Raw timings back."""
    load = os.getloadavg()[0]
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_at = None
    if kill_after_videos is not None:
        while proc.poll() is None and killed_at is None:
            if len(list(out.glob("*.mp4"))) >= kill_after_videos:
                server = next((s for s in servers_of(marker) if busy(s[1])), None)
                if server:
                    os.kill(server[0], signal.SIGKILL)
                    killed_at = time.time() - start
            time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=3600)
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"farm failed ({proc.returncode}):\n{stderr[-3000:]}")
    videos = sorted(p.stat().st_mtime - start for p in out.glob("*.mp4"))
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {"command": cmd, "wall_s": round(wall, 2), "video_done_at_s": [round(v, 2) for v in videos],
            "killed_server_at_s": None if killed_at is None else round(killed_at, 2), "results": records,
            "load_avg_1min_before": load, "summary": stdout}


def rates(run: dict) -> dict:
    """Jobs per minute end to end (Ray, server start, model load included) and warm (first to last video)."""
    done = run["video_done_at_s"]
    warm = (len(done) - 1) / (done[-1] - done[0]) * 60 if len(done) > 1 and done[-1] > done[0] else None
    return {"end_to_end_jobs_per_min": round(len(done) / run["wall_s"] * 60, 2),
            "warm_jobs_per_min": None if warm is None else round(warm, 2)}


def measure(args) -> dict:
    """The three runs, in a fresh temporary folder each."""
    runs = {}
    plan = [("workers_1", 1, None), ("workers_2", 2, None), ("workers_1_server_killed", 1, args.kill_after)]
    for name, workers, kill in plan:
        with tempfile.TemporaryDirectory(prefix="farm_bench_") as tmp:
            base, out = Path(tmp), Path(tmp) / "out"
            cmd, marker = farm_command(base, out, args.comfyui, args.python, workers, args.jobs)
            print(f"{name}: {args.jobs} jobs on {workers} worker(s)...", file=sys.stderr, flush=True)
            runs[name] = {**timed_run(cmd, out, marker, kill), "workers": workers}
            runs[name].update(rates(runs[name]))
            (base / "custom_nodes" / PACK_NAME).unlink(missing_ok=True)
    lost = runs["workers_1_server_killed"]["wall_s"] - runs["workers_1"]["wall_s"]
    return {"date": datetime.date.today().isoformat(), "machine": {"cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version()},
            "ray": __import__("ray").__version__, "workflow": WORKFLOW.name, "smoke": True, "jobs": args.jobs,
            "time_lost_to_killed_server_s": round(lost, 2), "runs": runs}


def report(data: dict) -> str:
    """The figures as a Markdown table."""
    lines = [f"{data['jobs']} smoke-size jobs of {data['workflow']}, {data['machine']['cpus']} CPUs, "
             f"ray {data['ray']}, {data['date']}", "",
             "| run | wall s | jobs/min end to end | jobs/min warm |", "|---|---|---|---|"]
    for name, run in data["runs"].items():
        lines.append(f"| {name} | {run['wall_s']} | {run['end_to_end_jobs_per_min']} | {run['warm_jobs_per_min']} |")
    killed = data["runs"]["workers_1_server_killed"]
    retried = [r for r in killed["results"] if (r.get("attempts") or 1) > 1]
    lines += ["", f"time lost to one killed server (1 worker, killed at {killed['killed_server_at_s']} s): "
              f"{data['time_lost_to_killed_server_s']} s; the retried job's attempts took "
              f"{retried[0]['attempt_seconds'] if retried else '?'} s"]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Measure and save, or print a saved file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", dest="show", metavar="JSON", help="print the figures of a saved run and exit")
    ap.add_argument("--comfyui", help="ComfyUI folder")
    ap.add_argument("--python", help="ComfyUI's Python (default: COMFYUI/.venv/bin/python)")
    ap.add_argument("--jobs", type=int, default=6, help="jobs per run (default %(default)s)")
    ap.add_argument("--kill-after", type=int, default=2, help="kill the server once this many videos exist")
    ap.add_argument("--out", help="where to save the raw figures (JSON)")
    args = ap.parse_args(argv)
    if args.show:
        print(report(json.loads(Path(args.show).read_text())))
        return 0
    if not args.comfyui:
        ap.error("--comfyui is required to measure (or --print a saved file)")
    args.python = args.python or str(Path(args.comfyui) / ".venv" / "bin" / "python")
    data = measure(args)
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())

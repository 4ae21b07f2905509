"""Render many image-to-video jobs on a Ray cluster of ComfyUI workers; every job ends exactly once.

    python workflows/farm.py jobs.jsonl --workflow workflows/api/i2vgen_xl_image_to_video.api.json \\
        --out renders/ --comfyui ~/ComfyUI [--python ~/ComfyUI/.venv/bin/python] [--workers N] [--cpu] \\
        [--smoke] [--address RAY_ADDRESS] [--comfyui-arg=ARG]... [--retries K]

jobs.jsonl holds one job a line; only "image" is required (a path, relative to the jobs file's folder):

    {"id": "cat", "image": "cat.png", "prompt": "a cat surfing", "negative": "blurry", "seed": 1,
     "set": {"11.steps": 30}}

A job without "id" gets one derived from its content, so the same line always maps to the same output.

Each worker is a Ray actor (one per GPU, or one CPU server each with --cpu) that starts one ComfyUI server on
ComfyUI's own Python, on a free local port with its own scratch folders, and keeps it warm across jobs. The graph of
each job is built with headless_api.py's code (--smoke, prompts, seed, --set). The driver writes DIR/<id>.mp4
atomically and one line per job into DIR/results.jsonl. A server or worker that dies mid-job costs an attempt and
the job runs again on a fresh server (at most --retries attempts); a job ComfyUI rejects or fails is `failed` with
ComfyUI's message at once. Running the same command again renders only the jobs without a video. Needs `ray`
(pip install -e ".[farm]"), never in ComfyUI's own environment. Exit status: 0 every job ok, 1 some failed, 2 bad
use or no worker could start.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# workflows/ itself (never the repo root: our nodes/ must not shadow ComfyUI's `nodes`), for headless_api
sys.path.insert(0, str(Path(__file__).resolve().parent))
import headless_api as headless  # noqa: E402

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")
JOB_KEYS = {"id", "image", "prompt", "negative", "seed", "set"}
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESULTS = "results.jsonl"
SERVER_LOG_TAIL = 1500


# ------------------------------------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class Job:
    """One line of the jobs file."""

    id: str
    image: Path
    prompt: Optional[str] = None
    negative: Optional[str] = None
    seed: Optional[int] = None
    set: dict = field(default_factory=dict)


def derived_id(fields: dict) -> str:
    """A stable id from a job's content (everything but "id"): the same line gives the same output name."""
    content = json.dumps({k: v for k, v in fields.items() if k != "id"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def parse_job(fields: Any, base: Path, where: str) -> Job:
    """Check one decoded line and turn it into a Job; UsageError says what is wrong and where."""
    if not isinstance(fields, dict):
        raise headless.UsageError(f"{where}: expected a JSON object like {{\"image\": \"cat.png\"}}")
    unknown = sorted(set(fields) - JOB_KEYS)
    if unknown:
        raise headless.UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; a job has {', '.join(sorted(JOB_KEYS))}")
    if not isinstance(fields.get("image"), str) or not fields["image"]:
        raise headless.UsageError(f"{where}: \"image\" (a path to the input image) is required")
    job_id = fields.get("id", derived_id(fields))
    if not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
        raise headless.UsageError(f"{where}: id {job_id!r} cannot name a file; use letters, digits, '.', '_', '-' "
                                  f"(not first), at most 128 characters")
    for key in ("prompt", "negative"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise headless.UsageError(f"{where}: \"{key}\" must be a string")
    seed = fields.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise headless.UsageError(f"{where}: \"seed\" must be an integer, got {seed!r}")
    sets = fields.get("set", {})
    if not isinstance(sets, dict) or not all(isinstance(k, str) and "." in k for k in sets):
        raise headless.UsageError(f"{where}: \"set\" must map \"NODE_ID.INPUT\" to a value, "
                                  f"e.g. {{\"11.steps\": 30}}")
    image = Path(fields["image"]).expanduser()
    image = image if image.is_absolute() else base / image
    if not image.is_file():
        raise headless.UsageError(f"{where}: image {image} does not exist (relative paths start at the jobs "
                                  f"file's folder, {base})")
    return Job(id=job_id, image=image, prompt=fields.get("prompt"), negative=fields.get("negative"), seed=seed,
               set=dict(sets))


def read_jobs(path: Path) -> list[Job]:
    """Every job of a JSONL file (blank lines skipped); duplicate ids are refused, since they would share a video."""
    path = Path(path)
    if not path.is_file():
        raise headless.UsageError(f"jobs file {path} does not exist")
    jobs: list[Job] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            fields = json.loads(line)
        except ValueError as err:
            raise headless.UsageError(f"{where}: not JSON ({err})") from None
        job = parse_job(fields, path.resolve().parent, where)
        if job.id in first_line:
            raise headless.UsageError(f"{where}: job id {job.id!r} is also on line {first_line[job.id]}; ids name "
                                      f"the output files, so give each job its own id (or another seed)")
        first_line[job.id] = number
        jobs.append(job)
    if not jobs:
        raise headless.UsageError(f"{path} has no jobs; write one JSON object a line, e.g. {{\"image\": \"cat.png\"}}")
    return jobs


def job_prompt(workflow: dict, job: Job, smoke: bool) -> dict:
    """The job's graph (all but the uploaded file name), built by headless_api's own rules."""
    sets = [f"{key}={json.dumps(value)}" for key, value in job.set.items()]
    return headless.build_prompt(workflow, smoke=smoke, text=job.prompt, negative=job.negative, seed=job.seed,
                                 sets=sets)


# ------------------------------------------------------------------------------------------------ output folder
def write_atomically(path: Path, data: bytes) -> None:
    """Write a file under a temporary name in the same folder and rename it: readers see all of it or nothing."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class OutputDir:
    """DIR/<id>.mp4 and DIR/results.jsonl, owned by one driver at a time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".farm.lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise headless.UsageError(f"another farm run is writing into {self.path}; wait for it or use another "
                                      f"--out") from None
        for stale in self.path.glob(".*.part"):  # left by a driver killed mid-write
            stale.unlink(missing_ok=True)
        self.records = self._read_records()

    def video(self, job_id: str) -> Path:
        """Where a job's video goes."""
        return self.path / f"{job_id}.mp4"

    def done(self, job_id: str) -> bool:
        """Whether the job already has its video (from this run or an earlier one)."""
        return self.video(job_id).is_file()

    def _read_records(self) -> dict[str, dict]:
        """The last record of each id in results.jsonl (a torn last line from a killed driver is ignored)."""
        records: dict[str, dict] = {}
        results = self.path / RESULTS
        if results.is_file():
            for line in results.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict) and "id" in rec:
                        records[rec["id"]] = rec
        return records

    def record(self, rec: dict) -> None:
        """Append one result at once (durable across a killed driver); compact() keeps one line per job."""
        self.records[rec["id"]] = rec
        with open(self.path / RESULTS, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def save(self, job_id: str, data: bytes, rec: dict) -> None:
        """The video first, then its record: a record never names a missing file."""
        write_atomically(self.video(job_id), data)
        self.record(rec)

    def compact(self, order: list[str]) -> None:
        """Rewrite results.jsonl with one line per job, jobs-file order first, then ids of earlier runs."""
        listed = set(order)
        ids = order + [i for i in self.records if i not in listed]
        text = "".join(json.dumps(self.records[i]) + "\n" for i in ids if i in self.records)
        write_atomically(self.path / RESULTS, text.encode())

    def close(self) -> None:
        """Release the lock."""
        self._lock.close()


# ------------------------------------------------------------------------------------------------ ComfyUI servers
@dataclass(frozen=True)
class ServerSpec:
    """How a worker starts its ComfyUI server."""

    comfyui: str
    python: str
    cpu: bool = False
    args: tuple[str, ...] = ()
    startup_timeout: float = 600.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills the server when the worker that started it dies, however."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def server_command(spec: ServerSpec, port: int, scratch: Path) -> list[str]:
    """ComfyUI's command line: its own Python, a local port, scratch folders, then every --comfyui-arg."""
    cmd = [spec.python, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]
    for name in ("output", "input", "temp", "user"):
        cmd += [f"--{name}-directory", str(scratch / name)]
    if spec.cpu:
        cmd.append("--cpu")
    return cmd + list(spec.args)


def launch_server(spec: ServerSpec, scratch: Path) -> tuple[subprocess.Popen, headless.Client]:
    """Start one ComfyUI server and wait until it answers; RuntimeError with its log when it cannot start."""
    for name in ("output", "input", "temp", "user"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # Ray's paths must not leak into ComfyUI's Python
    log_path = scratch / "server.log"
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(server_command(spec, port, scratch), cwd=spec.comfyui, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        client = headless.Client(f"http://127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + spec.startup_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.get_json("/system_stats")
                return proc, client
            except (headless.ComfyError, OSError):
                time.sleep(0.3)
        stop_server(proc)
        if "address already in use" not in log_tail(log_path).lower():
            break
    raise RuntimeError(f"ComfyUI did not start ({describe_exit(proc.returncode)}); command: "
                       f"{' '.join(server_command(spec, port, scratch))}\n{log_tail(log_path)}")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server and anything it started (its own process group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def log_tail(path: Path, chars: int = SERVER_LOG_TAIL) -> str:
    """The end of a server log."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def describe_exit(code: Optional[int]) -> str:
    """A server's exit status in words."""
    if code is None:
        return "still running, not answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or killed by hand)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def _sweep_scratch(root: Path) -> None:
    """Remove scratch folders of workers that died without cleaning up (their pid is gone)."""
    for folder in root.glob("*-*"):
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


class ComfyWorker:
    """A Ray actor that owns one warm ComfyUI server and renders one job at a time on it."""

    def __init__(self, spec: ServerSpec, name: str):
        import ray

        self.spec, self.name = spec, name
        self.node = ray.get_runtime_context().get_node_id()[:8]
        root = Path(tempfile.gettempdir()) / "comfyui-farm"
        root.mkdir(exist_ok=True)
        _sweep_scratch(root)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        self.proc: Optional[subprocess.Popen] = None
        self.client: Optional[headless.Client] = None
        atexit.register(self.shutdown)
        self._ensure_server()

    def _ensure_server(self) -> None:
        """A live server: the current one, or a fresh one after it died."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc, self.client = launch_server(self.spec, self.scratch)

    def info(self) -> dict:
        """Who this worker is: name, node, pid of the worker and of its server, server address."""
        return {"worker": self.label(), "pid": os.getpid(), "server_pid": self.proc.pid if self.proc else None,
                "server": self.client.base if self.client else None, "scratch": str(self.scratch)}

    def label(self) -> str:
        """The worker's name in results: wN@node."""
        return f"{self.name}@{self.node}"

    def render(self, job_id: str, prompt: dict, upload_name: str, upload: bytes, timeout: float) -> dict:
        """Run one job; status ok (with the video bytes), failed (ComfyUI's message) or lost (the server died)."""
        started = time.monotonic()
        out = {"worker": self.label()}
        try:
            self._ensure_server()
        except RuntimeError as err:  # a fresh server would not start: this attempt is lost, the job goes back
            out.update(status="lost", error=str(err), seconds=round(time.monotonic() - started, 3))
            return out
        try:
            out.update(self._run(prompt, upload_name, upload, timeout))
        except headless.ComfyTimeout as err:
            stop_server(self.proc)  # a hung server: the next job gets a fresh one
            out.update(status="lost", error=str(err))
        except (headless.ComfyError, OSError) as err:
            out.update(self._classify(err))
        finally:
            self._clear_files()
        out["seconds"] = round(time.monotonic() - started, 3)
        return out

    def _classify(self, err: Exception) -> dict:
        """ComfyUI's refusal or a node's error while the server lives: failed; a dead or mute server: lost."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)  # a refused connection can come just before the exit is seen
        code = self.proc.poll()
        if code is None and isinstance(err, headless.ComfyError) and not isinstance(err, headless.ComfyUnreachable):
            return {"status": "failed", "error": str(err)}
        stop_server(self.proc)
        reason = describe_exit(code) if code is not None else f"it stopped answering ({err}) and was stopped"
        return {"status": "lost", "error": f"the ComfyUI server died during the job ({reason}); the end of its "
                                           f"log:\n{log_tail(self.scratch / 'server.log')}"}

    def _run(self, prompt: dict, upload_name: str, upload: bytes, timeout: float) -> dict:
        """Upload, queue, wait, fetch the video."""
        path = self.scratch / "upload" / upload_name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(upload)
        name = self.client.upload(path)
        kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        entry = headless.execute(self.client, headless.apply_overrides(prompt, **{kind: name}), timeout)
        videos = [r for r in headless.output_files(entry)
                  if r.get("type", "output") == "output" and Path(r["filename"]).suffix.lower() in VIDEO_SUFFIXES]
        if not videos:
            return {"status": "failed", "error": "the workflow saved no video; it needs a SaveVideo node "
                                                 f"(outputs: {headless.output_files(entry)})"}
        return {"status": "ok", "data": self.client.fetch(videos[-1])}

    def _clear_files(self) -> None:
        """Empty the server's input and output folders after a job: thousands of jobs must not fill the disk."""
        for name in ("upload", "input", "output"):
            folder = self.scratch / name
            if folder.is_dir():
                for item in folder.iterdir():
                    if item.is_dir():
                        shutil.rmtree(item, ignore_errors=True)
                    else:
                        item.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Stop the server and remove the scratch folders."""
        if self.proc is not None:
            stop_server(self.proc)
        shutil.rmtree(self.scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ progress
class Progress:
    """Counts, a one-line progress bar on stderr, and the summary table at the end."""

    def __init__(self, total: int, skipped: int, stream=sys.stderr):
        self.total, self.skipped, self.stream = total, skipped, stream
        self.started = time.monotonic()
        self.ok = self.failed = self.running = self.lost = 0
        self.per_worker: dict[str, dict] = {}
        self._last_print = 0.0
        self._tty = stream.isatty()

    def worker(self, name: str) -> dict:
        """The running counts of one worker."""
        return self.per_worker.setdefault(name, {"ok": 0, "failed": 0, "lost": 0, "busy_s": 0.0})

    def attempt(self, name: str, status: str, seconds: float) -> None:
        """Count one finished attempt on a worker."""
        w = self.worker(name)
        w[status] = w.get(status, 0) + 1
        w["busy_s"] += seconds
        if status == "lost":
            self.lost += 1

    def line(self) -> str:
        """The progress line: bar, done / failed / running, jobs per minute of each worker."""
        done = self.ok + self.failed
        width = 24
        filled = int(width * done / max(1, self.total))
        rates = " ".join(f"{n} {self._rate(w):.1f}/min" for n, w in sorted(self.per_worker.items()))
        return (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} ok {self.ok} failed {self.failed} "
                f"running {self.running}" + (f" lost {self.lost}" if self.lost else "") +
                f" | {rates} | {time.monotonic() - self.started:.0f}s")

    def _rate(self, w: dict) -> float:
        """Videos per minute of wall time since the run started."""
        return w["ok"] / max(1e-9, (time.monotonic() - self.started) / 60)

    def show(self, force: bool = False) -> None:
        """Redraw the bar in a terminal; elsewhere (logs, CI) print a line at most every 10 s."""
        now = time.monotonic()
        if self._tty:
            if force or now - self._last_print > 0.2:
                print("\r" + self.line(), end="", file=self.stream, flush=True)
                self._last_print = now
        elif force or now - self._last_print > 10:
            print(self.line(), file=self.stream, flush=True)
            self._last_print = now

    def finish(self) -> None:
        """The last state of the bar, on a line of its own."""
        self.show(force=True)
        if self._tty:
            print(file=self.stream)

    def summary(self) -> str:
        """The table printed at the end: one row per worker and the totals."""
        rows = [("worker", "ok", "failed", "lost", "busy s", "jobs/min")]
        for name, w in sorted(self.per_worker.items()):
            rows.append((name, str(w["ok"]), str(w["failed"]), str(w["lost"]), f"{w['busy_s']:.1f}",
                         f"{self._rate(w):.2f}"))
        minutes = (time.monotonic() - self.started) / 60
        rows.append(("all", str(self.ok), str(self.failed), str(self.lost), "",
                     f"{self.ok / max(minutes, 1e-9):.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return "\n".join(lines) + f"\n{self.total} job(s) run{skipped} in {minutes * 60:.1f}s"


# ------------------------------------------------------------------------------------------------ driver
def start_ray(address: Optional[str], cpu: bool, workers: Optional[int], verbose: bool) -> None:
    """Join a Ray cluster (--address) or start a local one."""
    try:
        import ray
    except ImportError:
        raise headless.UsageError("the farm needs Ray: pip install -e \".[farm]\" (in the farm's environment, not "
                                  "in ComfyUI's)") from None
    import logging

    options = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING}
    if address:
        ray.init(address=address, **options)
    else:
        num_cpus = max(os.cpu_count() or 1, workers or 1) if cpu else None
        ray.init(num_cpus=num_cpus, include_dashboard=False, **options)
    # the driver's copies of these modules travel with the actors: the workers need not have the repo
    ray.cloudpickle.register_pickle_by_value(headless)
    if __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def worker_count(requested: Optional[int], cpu: bool, local: bool) -> int:
    """How many workers: as asked, else one per GPU of the cluster (one with --cpu)."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    if cpu:
        return requested or 1
    if gpus == 0:
        raise headless.UsageError("this Ray cluster has no GPU; add --cpu to run CPU servers, or join a cluster "
                                  "with GPUs (--address)")
    if requested and requested > gpus:
        message = f"--workers {requested} but the cluster has {gpus} GPU(s)"
        if local:
            raise headless.UsageError(message + "; ask for at most that many")
        print(f"warning: {message}; the others wait until GPUs join", file=sys.stderr)
    return requested or gpus


def start_workers(spec: ServerSpec, count: int) -> dict:
    """One actor per worker; Ray restarts a dead one (its server with it) whenever a job is sent to it."""
    import ray

    remote = ray.remote(ComfyWorker)
    resources = {"num_cpus": 1} if spec.cpu else {"num_gpus": 1, "num_cpus": 0}
    return {remote.options(max_restarts=-1, max_task_retries=0, **resources).remote(spec, f"w{i}"): f"w{i}"
            for i in range(count)}


def stop_workers(actors: dict) -> None:
    """Let each worker stop its server and remove its scratch folders (a killed one has its server killed anyway)."""
    import ray

    with contextlib.suppress(Exception):  # dead or never-started workers have nothing left to clean
        ray.wait([actor.shutdown.remote() for actor in actors], num_returns=len(actors), timeout=30)


@dataclass
class Attempts:
    """What happened to one job so far."""

    count: int = 0
    seconds: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def run_jobs(jobs: list[Job], prompts: dict, out: OutputDir, actors: dict, args, progress: Progress) -> None:
    """Keep one job in flight per worker until every job has ended; Ray restarts workers that die."""
    import ray
    from ray.exceptions import RayActorError

    pending: deque[Job] = deque(jobs)
    idle = list(actors)
    inflight: dict = {}  # object ref -> (job, actor, sent); job None: asking a restarting worker if it is back
    labels = dict(actors)  # actor -> "wN@node" once known
    resting: list[tuple[float, Any]] = []  # (when to ask again, actor)
    tries: dict[str, Attempts] = {job.id: Attempts() for job in jobs}
    setup_errors: list[str] = []
    while pending or any(job for job, _, _ in inflight.values()):
        while pending and idle:
            job, actor = pending.popleft(), idle.pop(0)
            ref = actor.render.remote(job.id, prompts[job.id], f"{job.id}{job.image.suffix.lower()}",
                                      job.image.read_bytes(), args.job_timeout)
            inflight[ref] = (job, actor, time.monotonic())
            progress.running += 1
        for when, actor in [r for r in resting if r[0] <= time.monotonic()]:
            resting.remove((when, actor))
            inflight[actor.info.remote()] = (None, actor, time.monotonic())
        if not inflight and not resting:
            raise headless.UsageError("no worker could start its ComfyUI server:\n" + "\n".join(setup_errors[-2:]))
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5) if inflight else ([], [])
        for ref in ready:
            job, actor, sent = inflight.pop(ref)
            try:
                res = ray.get(ref)
                labels[actor] = res["worker"]
            except RayActorError as err:
                if err.actor_init_failed:  # this worker cannot start a server: drop it; its job goes back
                    setup_errors.append(f"{actors[actor]}: {_cause(err)}")
                    if job is not None:
                        pending.appendleft(job)
                        progress.running -= 1
                    continue
                resting.append((time.monotonic() + 1.0, actor))  # Ray is restarting it: no job until it is back
                if job is None:
                    continue
                res = {"status": "lost", "worker": labels[actor], "seconds": round(time.monotonic() - sent, 3),
                       "error": f"the worker process died during the job: {_cause(err)}"}
            else:
                idle.append(actor)
                if job is None:
                    continue
            progress.running -= 1
            _finish_attempt(job, res, tries[job.id], out, args.retries, pending, progress)
        progress.show()


def _cause(err: Exception) -> str:
    """The useful part of a Ray error: the last line of the worker's traceback, or its first line."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"\w+(Error|Exception): ", line.strip())]
    return (errors[-1] if errors else lines[0] if lines else type(err).__name__).strip()


def _finish_attempt(job: Job, res: dict, tries: Attempts, out: OutputDir, retries: int, pending: deque,
                    progress: Progress) -> None:
    """Record an attempt: save a video, record a failure, or send a lost job back while attempts remain."""
    tries.count += 1
    tries.seconds.append(res.get("seconds", 0.0))
    progress.attempt(res["worker"], res["status"], res.get("seconds", 0.0))
    rec = {"id": job.id, "status": "ok", "attempts": tries.count, "worker": res["worker"],
           "seconds": round(sum(tries.seconds), 3), "attempt_seconds": tries.seconds}
    if res["status"] == "ok":
        out.save(job.id, res["data"], {**rec, "output": str(out.video(job.id))})
        progress.ok += 1
        return
    if res["status"] == "lost":
        tries.errors.append(res["error"])
        if tries.count < retries:
            pending.appendleft(job)
            return
        res = {**res, "error": f"the ComfyUI server died in each of {tries.count} attempt(s); the last time: "
                               f"{res['error']}"}
    out.record({**rec, "status": "failed", "error": res["error"]})
    progress.failed += 1


def prepare(jobs: list[Job], workflow: dict, smoke: bool, out: OutputDir) -> tuple[list[Job], dict, int]:
    """The jobs still to render with their graphs; jobs whose graph cannot be built are recorded as failed."""
    todo, prompts, skipped = [], {}, 0
    for job in jobs:
        if out.done(job.id):
            skipped += 1
            if out.records.get(job.id, {}).get("status") != "ok":  # the driver died between video and record
                out.record({"id": job.id, "status": "ok", "attempts": None, "worker": None, "seconds": None,
                            "output": str(out.video(job.id))})
            continue
        try:
            prompts[job.id] = job_prompt(workflow, job, smoke)
        except headless.ComfyError as err:
            out.record({"id": job.id, "status": "failed", "attempts": 0, "worker": None, "seconds": 0.0,
                        "error": str(err)})
            continue
        todo.append(job)
    return todo, prompts, skipped


def default_python(comfyui: Path) -> Path:
    """ComfyUI's own Python: its .venv or venv folder; otherwise --python must say."""
    for rel in (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe", "venv/Scripts/python.exe"):
        if (comfyui / rel).is_file():
            return comfyui / rel
    raise headless.UsageError(f"no .venv or venv in {comfyui}; pass --python with the Python that runs ComfyUI")


def server_spec(args) -> ServerSpec:
    """The workers' server settings from the command line, checked on this machine."""
    comfyui = Path(args.comfyui).expanduser().resolve()
    if not (comfyui / "main.py").is_file():
        raise headless.UsageError(f"--comfyui {comfyui} has no main.py; point it at a ComfyUI checkout")
    python = Path(args.python).expanduser() if args.python else default_python(comfyui)
    return ServerSpec(comfyui=str(comfyui), python=str(python), cpu=args.cpu, args=tuple(args.comfyui_arg),
                      startup_timeout=args.startup_timeout)


def farm(args) -> int:
    """The whole run; returns the exit status."""
    jobs = read_jobs(Path(args.jobs))
    workflow = headless.load_api_workflow(Path(args.workflow))
    spec = server_spec(args)
    if args.retries < 1:
        raise headless.UsageError("--retries must be at least 1 (the first attempt counts)")
    out = OutputDir(Path(args.out))
    try:
        todo, prompts, skipped = prepare(jobs, workflow, args.smoke, out)
        progress = Progress(total=len(todo), skipped=skipped)
        if todo:
            import ray

            start_ray(args.address, args.cpu, args.workers, args.verbose)
            actors: dict = {}
            try:
                actors = start_workers(spec, min(worker_count(args.workers, args.cpu, not args.address), len(todo)))
                progress.show(force=True)
                run_jobs(todo, prompts, out, actors, args, progress)
            finally:
                stop_workers(actors)
                ray.shutdown()
        progress.finish()
        out.compact([job.id for job in jobs])
        print(progress.summary())
        failed = [job.id for job in jobs if out.records.get(job.id, {}).get("status") != "ok"]
        for job_id in failed:
            print(f"failed: {job_id}: {out.records.get(job_id, {}).get('error', '?').splitlines()[0]}")
        return 1 if failed else 0
    finally:
        out.close()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(description="Render image-to-video jobs on a Ray cluster of ComfyUI workers, each "
                                             "job exactly once.")
    ap.add_argument("jobs", help="JSONL file, one job a line: {\"id\", \"image\", \"prompt\", \"negative\", \"seed\", "
                                 "\"set\": {\"NODE.INPUT\": value}}; only image is required")
    ap.add_argument("--workflow", required=True, help="API-format workflow (NAME.api.json)")
    ap.add_argument("--out", required=True, help="folder for <id>.mp4 and results.jsonl")
    ap.add_argument("--comfyui", required=True, help="ComfyUI folder (with main.py), the same path on every node")
    ap.add_argument("--python", help="the Python that runs ComfyUI (default: COMFYUI/.venv or COMFYUI/venv)")
    ap.add_argument("--workers", type=int, help="number of workers (default: one per GPU; 1 with --cpu)")
    ap.add_argument("--cpu", action="store_true", help="CPU workers: each runs one ComfyUI server with --cpu")
    ap.add_argument("--smoke", action="store_true", help="as headless_api.py --smoke: 1/10 size, 1/8 frames, 2 steps")
    ap.add_argument("--address", help="join this Ray cluster (e.g. auto, or HEAD_IP:6379) instead of a local one")
    ap.add_argument("--comfyui-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for every ComfyUI server (repeat; write --comfyui-arg=--flag)")
    ap.add_argument("--retries", type=int, default=3,
                    help="attempts per job when its server dies (default %(default)s)")
    ap.add_argument("--job-timeout", type=float, default=3600, help="seconds one attempt may take")
    ap.add_argument("--startup-timeout", type=float, default=600, help="seconds a server may take to start")
    ap.add_argument("--verbose", action="store_true", help="show Ray's and the workers' logs")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: ray.shutdown stops workers
    try:
        return farm(args)
    except headless.UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

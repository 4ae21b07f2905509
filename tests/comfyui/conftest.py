"""A real ComfyUI server with this package installed as a custom node, for end-to-end tests.

Needs two environment variables (the tests skip with a reason when they are missing, which is what CI does):

* ``COMFYUI_PATH``: a ComfyUI checkout (the folder with main.py), v0.3.64 or newer;
* ``COMFYUI_PYTHON``: the Python that runs it (its venv's interpreter);
* optionally ``COMFYUI_FRONTEND_ROOT``: another frontend's static folder, served with ``--front-end-root`` (how the
  browser tests run on the newest frontend as well as on the one ComfyUI pins).

The server runs on the CPU (``--cpu``) on a free port, with output/input/temp/user folders in a temporary directory,
and loads only this package: a temporary ``custom_nodes`` folder holds a symlink to the repository and is passed,
together with the demo-weight model folders, through ``--extra-model-paths-config``; ``--disable-all-custom-nodes
--whitelist-custom-nodes`` keeps whatever else is installed in the checkout out of the way. Nothing is written into
COMFYUI_PATH. Demo weights come from ``python -m i2vgen_core demo-weights DEST``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# lets the test modules in the subfolders (server/, browser/, inprocess/, farm/) import this folder's modules
# (workflow_utils.py, this conftest) and the ones they share within their subfolder by name: check_runner
# (inprocess/), test_frontend (browser/), test_server_graphs and test_hardening (server/); only these folders,
# never the repo root
for _folder in ("inprocess", "browser", "server", ""):
    _path = str(Path(__file__).resolve().parent / _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)
PACK_NAME = "i2vgen-xl-under-test"
STARTUP_TIMEOUT_S = float(os.environ.get("COMFYUI_STARTUP_TIMEOUT", "300"))

#: Every node of the contract between the two node helpers.
CONTRACT_NODES = (
    "I2VGenXLModelLoader",
    "I2VGenXLTextEncode",
    "I2VGenXLSemanticEncode",
    "I2VGenXLDetailEncode",
    "I2VGenXLConditioning",
    "I2VGenXLSampler",
    "I2VGenXLRefineSampler",
    "I2VGenXLLatentUpscale",
    "I2VGenXLVideoEncode",
    "I2VGenXLVideoDecode",
    "I2VGenXLExtend",
)


def comfyui_paths() -> tuple[Path, Path]:
    """(COMFYUI_PATH, COMFYUI_PYTHON), or skip the calling test with the reason."""
    root, python = os.environ.get("COMFYUI_PATH"), os.environ.get("COMFYUI_PYTHON")
    if not root or not python:
        pytest.skip("real-ComfyUI tests need COMFYUI_PATH (a ComfyUI checkout) and COMFYUI_PYTHON (its Python); "
                    "both are unset")
    root_p, python_p = Path(root), Path(python)
    if not (root_p / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH={root} has no main.py; point it at a ComfyUI checkout")
    if not (python_p.is_file() and os.access(python_p, os.X_OK)):
        pytest.skip(f"COMFYUI_PYTHON={python} is not an executable Python")
    return root_p, python_p


#: Test modules that take long and stay opt-in (I2VGEN_LONG_TESTS=1): the soak runs and the full-size encoder parity.
LONG_MODULES = {"test_soak.py": "the soak test (many runs on one server)",
                "test_encoders.py": "the encoder parity test (full-size random OpenCLIP, 15-30 min, ~14 GB on disk)"}


def pytest_collection_modifyitems(config, items):
    """Skip the long modules unless I2VGEN_LONG_TESTS=1 asks for them (CI runs everything else on every push)."""
    if os.environ.get("I2VGEN_LONG_TESTS") == "1":
        return
    for item in items:
        what = LONG_MODULES.get(Path(str(item.fspath)).name)
        if what:
            item.add_marker(pytest.mark.skip(reason=f"{what} is opt-in: set I2VGEN_LONG_TESTS=1"))


def frontend_args() -> list[str]:
    """``--front-end-root DIR`` when COMFYUI_FRONTEND_ROOT names a frontend's static folder (the newest frontend served
    by this ComfyUI, as ``pip install comfyui-frontend-package==X`` would), else [] (the frontend ComfyUI pins)."""
    root = os.environ.get("COMFYUI_FRONTEND_ROOT")
    if not root:
        return []
    if not (Path(root) / "index.html").is_file():
        pytest.fail(f"COMFYUI_FRONTEND_ROOT={root} has no index.html; point it at comfyui_frontend_package/static")
    return ["--front-end-root", root]


def proc_memory_mib(pid: int, field: str = "VmRSS") -> float | None:
    """A memory figure of process `pid` from /proc/PID/status (VmRSS resident, VmHWM peak) in MiB, or None where
    /proc cannot tell (not Linux, the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ demo weights
def demo_models_dir() -> Path:
    """Where the demo weights live: $I2VGEN_DEMO_MODELS, else <repo>/demo_models (git-ignored, reused across runs)."""
    return Path(os.environ.get("I2VGEN_DEMO_MODELS") or REPO / "demo_models")


def write_demo_weights(dest: Path) -> dict[str, list[str]]:
    """Run ``python -m i2vgen_core demo-weights DEST`` (keeps existing files); returns {folder: [file names]}."""
    from i2vgen_core.weights.demo import demo_file_names

    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "i2vgen_core", "demo-weights", str(dest)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m i2vgen_core demo-weights failed:\n{proc.stdout}\n{proc.stderr}")
    return demo_file_names()


# ------------------------------------------------------------------------------------------------ client
class PromptRejected(Exception):
    """POST /prompt answered 400: the graph failed ComfyUI's validation."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:2000])
        self.body = body

    def messages(self) -> str:
        """Every error text of the rejection, joined."""
        parts = [json.dumps(self.body.get("error", ""))]
        for node in (self.body.get("node_errors") or {}).values():
            for err in node.get("errors", []):
                parts.append(f"{err.get('message', '')} {err.get('details', '')}")
        return "\n".join(parts)


@dataclass
class RunResult:
    """What happened to one queued prompt."""

    prompt_id: str
    status: str = "pending"  # success | error | interrupted | timeout
    error: dict | None = None
    progress: list = field(default_factory=list)  # (monotonic time, node, value, max)
    executed: dict = field(default_factory=dict)  # node id -> ui output
    previews: int = 0
    node_seconds: dict = field(default_factory=dict)  # node id -> wall seconds between its "executing" events
    started: float = 0.0
    finished: float = 0.0
    history: dict | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def slowest(self, prompt: dict, n: int = 4) -> str:
        """The n nodes that took longest, as "ClassType 12.3s, ..."."""
        top = sorted(self.node_seconds.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{prompt.get(str(k), {}).get('class_type', k)} {v:.1f}s" for k, v in top)


class ComfyClient:
    """Minimal HTTP + websocket client of one ComfyUI server (the API the headless examples use)."""

    def __init__(self, host: str, port: int):
        self.base = f"http://{host}:{port}"
        self.ws_url = f"ws://{host}:{port}/ws"
        self.client_id = str(uuid.uuid4())

    def get(self, path: str, timeout: float = 60):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict | None]:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw.strip() else None)
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, {"error": raw.decode(errors="replace")}

    def queue(self, prompt: dict) -> str:
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise PromptRejected(body or {})
        return body["prompt_id"]

    def interrupt(self) -> None:
        self.post("/interrupt", {})

    def run(self, prompt: dict, timeout: float = 600, on_event=None) -> RunResult:
        """Queue `prompt` and follow it on the websocket until it finishes; `on_event(kind, data, result)` sees all."""
        import websocket  # websocket-client, in the test extra

        ws = websocket.create_connection(f"{self.ws_url}?clientId={self.client_id}", timeout=timeout)
        try:
            result = RunResult(prompt_id="", started=time.monotonic())
            result.prompt_id = self.queue(prompt)
            deadline = time.monotonic() + timeout
            current, since = None, time.monotonic()
            while True:
                ws.settimeout(max(1.0, deadline - time.monotonic()))
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    result.status = "timeout"
                    break
                if isinstance(raw, bytes):
                    result.previews += 1
                    if on_event:
                        on_event("preview", raw, result)
                    continue
                msg = json.loads(raw)
                kind, data = msg.get("type"), msg.get("data", {})
                if data.get("prompt_id") not in (None, result.prompt_id):
                    continue
                if on_event:
                    on_event(kind, data, result)
                if kind == "executing":
                    now = time.monotonic()
                    if current is not None:
                        result.node_seconds[current] = result.node_seconds.get(current, 0.0) + now - since
                    current, since = data.get("node"), now
                if kind == "progress":
                    result.progress.append((time.monotonic(), data.get("node"), data["value"], data["max"]))
                elif kind == "executed":
                    result.executed[data["node"]] = data.get("output")
                elif kind == "execution_error":
                    result.status, result.error = "error", data
                elif kind == "execution_interrupted":
                    result.status = "interrupted"
                elif kind == "execution_success":
                    result.status = "success"
                elif kind == "executing" and data.get("node") is None and data.get("prompt_id") == result.prompt_id:
                    break
                if result.status in ("error", "interrupted"):
                    break
            result.finished = time.monotonic()
        finally:
            ws.close()
        if result.status == "pending":
            result.status = "success"
        try:
            result.history = self.get(f"/history/{result.prompt_id}").get(result.prompt_id)
        except (urllib.error.URLError, ValueError):
            result.history = None
        return result


@dataclass
class ComfyServer:
    """A running server: its client, folders, process and log."""

    client: ComfyClient
    process: subprocess.Popen
    log_path: Path
    output_dir: Path
    input_dir: Path
    models_dir: Path
    python: Path
    manifest: dict  # {models folder: [demo file names]}
    demo_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def reset_peak_rss(self) -> bool:
        """Reset the kernel's peak-RSS counter (VmHWM) of the server; False where that is not allowed."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak_rss_mb(self) -> float | None:
        """Peak resident memory of the server process (VmHWM) in MiB, on Linux."""
        return proc_memory_mib(self.process.pid, "VmHWM")

    def probe_video(self, path: Path) -> dict:
        """Frame count, width and height of a saved video, read with PyAV in ComfyUI's Python."""
        return probe_video(self.python, path)


def probe_video(python: Path, path: Path) -> dict:
    """Frame count, width, height and fps of a video file, read with PyAV in ComfyUI's Python `python`."""
    code = ("import av, json, sys\n"
            "c = av.open(sys.argv[1]); s = c.streams.video[0]\n"
            "n = sum(1 for _ in c.decode(s))\n"
            "print(json.dumps({'frames': n, 'width': s.codec_context.width, 'height': s.codec_context.height,"
            " 'fps': float(s.average_rate or 0)}))\n")
    out = subprocess.run([str(python), "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"could not read {path}: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _wait_ready(client: ComfyClient, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode} during start-up:\n"
                               f"{log_path.read_text(errors='replace')[-6000:]}")
        try:
            client.get("/system_stats", timeout=5)
            return
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            time.sleep(0.5)
    raise RuntimeError(f"ComfyUI did not answer within {STARTUP_TIMEOUT_S:.0f}s:\n"
                       f"{log_path.read_text(errors='replace')[-6000:]}")


def _copy_example_inputs(input_dir: Path) -> None:
    """Images/videos shipped with the workflows, so LoadImage/LoadVideo in them find their files."""
    for f in (REPO / "workflows" / "inputs").glob("*"):
        if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".mp4", ".webm", ".gif") and f.is_file():
            shutil.copy2(f, input_dir / f.name)


def pack_config(base: Path) -> tuple[Path, dict[str, list[str]]]:
    """Under `base`: custom_nodes/ with a link to this package, models/ for extra files, and an
    extra_model_paths.yaml naming both and the demo weights; returns (the yaml, the demo-weight manifest)."""
    for name in ("custom_nodes", "models/i2vgen", "models/loras"):  # i2vgen: the loader's folder for test files
        (base / name).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_NAME
    if not link.exists():
        os.symlink(REPO, link, target_is_directory=True)
    demo = demo_models_dir()
    manifest = write_demo_weights(demo)
    lines = ["i2vgen_demo:", f"    base_path: {demo}"]
    lines += [f"    {folder}: {folder}" for folder in sorted(manifest)]
    lines += ["i2vgen_tests:", f"    base_path: {base / 'models'}", f"    custom_nodes: {base / 'custom_nodes'}",
              "    i2vgen: i2vgen", "    loras: loras", "    clip: clip", "    clip_vision: clip_vision",
              "    vae: vae"]
    yaml_path = base / "extra_model_paths.yaml"
    yaml_path.write_text("\n".join(lines) + "\n")
    return yaml_path, manifest


def pack_server_args(yaml_path: Path, extra_nodes: tuple[str, ...] = ()) -> list[str]:
    """The options that load this package alone (and the custom-node folders `extra_nodes`) with the demo weights
    (the farm test passes them on too)."""
    return ["--extra-model-paths-config", str(yaml_path), "--database-url", "sqlite:///:memory:",
            "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME, *extra_nodes]


def start_server(base: Path, extra_nodes: tuple[Path, ...] = (), env: dict | None = None) -> ComfyServer:
    """Start ComfyUI with this package and the demo weights, with all its folders under `base`; `extra_nodes` are
    test-only custom-node folders loaded beside the pack, `env` extra environment variables of the server."""
    root, python = comfyui_paths()
    pytest.importorskip("websocket", reason="the real-server tests need websocket-client (pip install "
                                            "websocket-client, it is in the test extra)")
    dirs = {name: base / name for name in ("output", "input", "temp", "user", "custom_nodes", "models")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    yaml_path, manifest = pack_config(base)
    for folder in extra_nodes:
        if not (dirs["custom_nodes"] / folder.name).exists():
            os.symlink(folder, dirs["custom_nodes"] / folder.name, target_is_directory=True)
    demo = demo_models_dir()
    _copy_example_inputs(dirs["input"])

    port = free_port()
    log_path = base / "server.log"
    args = [str(python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--output-directory", str(dirs["output"]), "--input-directory", str(dirs["input"]),
            "--temp-directory", str(dirs["temp"]), "--user-directory", str(dirs["user"]),
            *pack_server_args(yaml_path, tuple(f.name for f in extra_nodes)), "--preview-method", "latent2rgb",
            "--disable-auto-launch"]
    args += frontend_args()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    env.pop("PYTHONPATH", None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(args, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = ComfyServer(client=ComfyClient("127.0.0.1", port), process=process, log_path=log_path,
                         output_dir=dirs["output"], input_dir=dirs["input"], models_dir=dirs["models"],
                         python=python, manifest=manifest, demo_dir=demo)
    try:
        _wait_ready(server.client, process, log_path)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: ComfyServer) -> None:
    """Stop the server process and remove the custom-node link."""
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=30)
    link = server.log_path.parent / "custom_nodes" / PACK_NAME
    if link.is_symlink():
        link.unlink()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory) -> ComfyServer:
    """One server for the session (started on first use, stopped at the end)."""
    server = start_server(tmp_path_factory.mktemp("comfyui"))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def fresh_comfy_server(tmp_path_factory) -> ComfyServer:
    """A server of its own for one test module (cold caches: model loading is part of the first run)."""
    server = start_server(tmp_path_factory.mktemp("comfyui_fresh"))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def object_info(comfy_server) -> dict:
    """GET /object_info of the running server."""
    return comfy_server.client.get("/object_info", timeout=120)


WORKFLOWS = sorted((REPO / "workflows" / "api").glob("*.api.json"))


def pytest_generate_tests(metafunc):
    """Parametrise `contract_node` over the node contract and `workflow_path` over workflows/api/*.api.json."""
    if "contract_node" in metafunc.fixturenames:
        metafunc.parametrize("contract_node", CONTRACT_NODES)
    if "workflow_path" in metafunc.fixturenames:
        paths = WORKFLOWS or [None]
        metafunc.parametrize("workflow_path", paths, ids=[p.name if p else "none" for p in paths])


@pytest.fixture(scope="session")
def pack_name() -> str:
    """Folder name the package is installed under in the test server."""
    return PACK_NAME


@pytest.fixture(scope="session")
def contract_nodes() -> tuple[str, ...]:
    return CONTRACT_NODES


@pytest.fixture(scope="session")
def comfyui_install() -> tuple[Path, Path]:
    """(COMFYUI_PATH, COMFYUI_PYTHON), or skip."""
    return comfyui_paths()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def vgen_path() -> Path:
    """$VGEN_PATH, a checkout of github.com/ali-vilab/VGen (the original I2VGen-XL code; never downloaded), or skip."""
    path = os.environ.get("VGEN_PATH")
    if not path:
        pytest.skip("VGEN_PATH is unset: set it to a checkout of github.com/ali-vilab/VGen to compare with the "
                    "original code")
    vgen = Path(path)
    for needed in ("tools/modules/diffusions/diffusion_ddim.py", "tools/inferences/inference_i2vgen_entrance.py"):
        if not (vgen / needed).is_file():
            pytest.skip(f"VGEN_PATH={path} has no {needed}; point it at a VGen checkout")
    return vgen

"""A stand-in for ComfyUI's server (standard library only) for the farm's CPU tests: started like ComfyUI
(`python main.py --listen H --port P --output-directory ... --cpu ...`), it speaks /system_stats, /upload/image,
/prompt, /history and /view, and "renders" a job by writing a small JSON file named .mp4.

Knobs, read from the text of the CLIPTextEncode nodes of the submitted graph:

* ``@die``: the server kills itself (SIGKILL) in the middle of the job, every time;
* ``@die-once``: the same, but only the first time this text is seen (needs ``--fake-state``);
* ``@invalid``: /prompt refuses the graph the way ComfyUI's validation does (HTTP 400, node_errors);
* ``@raise``: the job runs and a node raises (history status "error" with an execution_error message);
* ``@slow``: the job takes ``--fake-slow`` seconds instead of ``--fake-seconds``.

``--fake-state DIR`` records every server's argv and pid (DIR/servers/PID.json) and every render (DIR/renders.log).
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import os
import queue
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    """ComfyUI's options that matter here, the fake's knobs; anything else is accepted and recorded."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8188)
    for name in ("output", "input", "temp", "user"):
        ap.add_argument(f"--{name}-directory")
    ap.add_argument("--fake-state")
    ap.add_argument("--fake-seconds", type=float, default=0.2)
    ap.add_argument("--fake-slow", type=float, default=3.0)
    return ap.parse_known_args()


ARGS, EXTRA = parse_args()
OUTPUT = Path(ARGS.output_directory or "output")
INPUT = Path(ARGS.input_directory or "input")
STATE = Path(ARGS.fake_state) if ARGS.fake_state else None
HISTORY: dict[str, dict] = {}
JOBS: "queue.Queue[tuple[str, dict]]" = queue.Queue()


def texts(prompt: dict) -> str:
    """Every CLIPTextEncode text of a graph, joined."""
    return " | ".join(str(n["inputs"].get("text", "")) for n in prompt.values()
                      if n.get("class_type") == "CLIPTextEncode")


def first_seen(text: str) -> bool:
    """Whether this text is new to the state folder (and remember it)."""
    marker = STATE / "seen" / hashlib.sha256(text.encode()).hexdigest()
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        marker.touch(exist_ok=False)
        return True
    except FileExistsError:
        return False


def record(line: str) -> None:
    """Append to DIR/renders.log."""
    if STATE is not None:
        with open(STATE / "renders.log", "a") as f:
            f.write(line + "\n")


def render(prompt_id: str, prompt: dict) -> None:
    """Do one job: sleep, maybe die or fail, write the "video"."""
    text = texts(prompt)
    record(f"start\t{os.getpid()}\t{text}")
    time.sleep(ARGS.fake_slow if "@slow" in text else ARGS.fake_seconds)
    if "@die" in text and ("@die-once" not in text or first_seen(text)):
        os.kill(os.getpid(), signal.SIGKILL)
    if "@raise" in text:
        HISTORY[prompt_id] = {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": [
            ["execution_error", {"node_id": "11", "node_type": "I2VGenXLSampler",
                                 "exception_message": "fake sampler failure: height must be a multiple of 64"}]]}}
        return
    image = next((n["inputs"].get("image") for n in prompt.values() if n.get("class_type") == "LoadImage"), None)
    seed = next((n["inputs"]["seed"] for n in prompt.values() if "seed" in n.get("inputs", {})), None)
    digest = hashlib.sha256((INPUT / image).read_bytes()).hexdigest() if image else None
    name = f"fake_{uuid.uuid4().hex[:8]}.mp4"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / name).write_text(json.dumps({"text": text, "seed": seed, "image_sha256": digest}))
    record(f"done\t{os.getpid()}\t{text}")
    HISTORY[prompt_id] = {"outputs": {"14": {"images": [{"filename": name, "subfolder": "", "type": "output"}],
                                             "animated": [True]}},
                          "status": {"status_str": "success", "completed": True, "messages": []}}


def executor() -> None:
    """ComfyUI runs one prompt at a time."""
    while True:
        render(*JOBS.get())


class Handler(BaseHTTPRequestHandler):
    """The endpoints the headless client uses."""

    def log_message(self, *args) -> None:
        """Quiet: the farm keeps the server's output in a log file of its own."""

    def reply(self, code: int, body) -> None:
        """Send JSON (or raw bytes) with a status code."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """/system_stats, /history/ID, /view."""
        url = urlparse(self.path)
        if url.path == "/system_stats":
            return self.reply(200, {"system": {"comfyui_version": "fake"}, "devices": []})
        if url.path.startswith("/history/"):
            pid = url.path.rsplit("/", 1)[1]
            return self.reply(200, {pid: HISTORY[pid]} if pid in HISTORY else {})
        if url.path == "/view":
            q = parse_qs(url.query)
            path = OUTPUT / q.get("subfolder", [""])[0] / q["filename"][0]
            return self.reply(200, path.read_bytes()) if path.is_file() else self.reply(404, {"error": "no file"})
        return self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        """/upload/image (multipart), /prompt."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/upload/image":
            msg = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            part = next(p for p in msg.get_payload() if p.get_param("name", header="content-disposition") == "image")
            name = part.get_filename()
            INPUT.mkdir(parents=True, exist_ok=True)
            (INPUT / name).write_bytes(part.get_payload(decode=True))
            return self.reply(200, {"name": name, "subfolder": "", "type": "input"})
        if self.path == "/prompt":
            prompt = json.loads(body)["prompt"]
            if "@invalid" in texts(prompt):
                return self.reply(400, {
                    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed "
                              "validation", "details": ""},
                    "node_errors": {"11": {"class_type": "I2VGenXLSampler", "errors": [
                        {"message": "Value smaller than min", "details": "steps: 0 < 1"}]}}})
            pid = str(uuid.uuid4())
            JOBS.put((pid, prompt))
            return self.reply(200, {"prompt_id": pid, "number": 0, "node_errors": {}})
        return self.reply(404, {"error": "not found"})


def main() -> None:
    """Record who we are, then serve."""
    if STATE is not None:
        (STATE / "servers").mkdir(parents=True, exist_ok=True)
        (STATE / "servers" / f"{os.getpid()}.json").write_text(json.dumps({"argv": EXTRA, "pid": os.getpid(),
                                                                            "args": vars(ARGS)}))
    threading.Thread(target=executor, daemon=True).start()
    ThreadingHTTPServer((ARGS.listen, ARGS.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

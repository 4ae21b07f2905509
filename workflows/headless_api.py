"""Run an I2VGen-XL workflow on a running ComfyUI server without the browser, and download the video.

    python workflows/headless_api.py workflows/api/i2vgen_xl_image_to_video.api.json \
        --server http://127.0.0.1:8188 --image my_photo.png --prompt "a cat surfing" --seed 42 --out results/

    # any input of any node: --set NODE_ID.INPUT=VALUE (VALUE is JSON, else a string)
    python workflows/headless_api.py workflows/api/i2vgen_xl_image_to_video.api.json \
        --set 10.length=8 --set 11.steps=20

    # a smoke test (e.g. on CPU with the demo weights): a tenth of the size, an eighth of the frames, 2 steps
    python workflows/headless_api.py workflows/api/i2vgen_xl_cascade.api.json --smoke

Only the standard library is needed (the size rules come from the pack's own `i2vgen_core.sizes`, which is
standard-library only too). With the `websocket-client` package installed, progress is followed live over
ComfyUI's websocket; otherwise /history is polled. Exit status: 0 done, 1 the server reported an error, 2 bad use.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Optional


_PACK = Path(__file__).resolve().parent.parent
if (_PACK / "i2vgen_core").is_dir():  # run from the pack: its own core (else an installed i2vgen_core)
    sys.path.insert(0, str(_PACK))
from i2vgen_core import sizes  # noqa: E402  the size rules; importing them needs no torch

IMAGE_LOADERS = {"LoadImage": "image"}
VIDEO_LOADERS = {"LoadVideo": "file"}
REFINER_SUFFIX_START = ", cinematic, High Contrast"


class ComfyError(RuntimeError):
    """The server refused the workflow or failed while running it."""


class ComfyUnreachable(ComfyError):
    """No answer from the server's address (not started, or gone)."""


class ComfyTimeout(ComfyError):
    """The run did not finish within the time allowed."""


class UsageError(ValueError):
    """The command line or a file given on it is not what this script expects."""


class Client:
    """A minimal ComfyUI HTTP client (POST /prompt, /upload/image; GET /history, /view)."""

    def __init__(self, server: str, timeout: float = 60.0):
        self.base = server.rstrip("/")
        if "://" not in self.base:
            self.base = "http://" + self.base
        self.timeout = timeout
        self.client_id = str(uuid.uuid4())

    def _request(self, path: str, data: Optional[bytes] = None, headers: Optional[dict] = None) -> bytes:
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            body = err.read().decode(errors="replace")
            raise ComfyError(f"{path}: HTTP {err.code}: {_explain_error(body)}") from None
        except urllib.error.URLError as err:
            raise ComfyUnreachable(f"cannot reach ComfyUI at {self.base} ({err.reason}); is the server running?") \
                from None

    def get_json(self, path: str) -> Any:
        """GET a JSON endpoint."""
        return json.loads(self._request(path))

    def upload(self, path: Path, overwrite: bool = True) -> str:
        """Upload a file into ComfyUI's input folder; returns the name to put into LoadImage / LoadVideo."""
        boundary = uuid.uuid4().hex
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts = [
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n".encode() + path.read_bytes() + b"\r\n",
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\n"
            f"{'true' if overwrite else 'false'}\r\n".encode(),
            f"--{boundary}--\r\n".encode(),
        ]
        body = b"".join(parts)
        info = json.loads(self._request("/upload/image", body,
                                        {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def queue(self, prompt: dict) -> str:
        """Submit an API-format workflow; returns the prompt id."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        out = json.loads(self._request("/prompt", body, {"Content-Type": "application/json"}))
        if out.get("node_errors"):
            raise ComfyError("the workflow was rejected:\n" + _format_node_errors(out["node_errors"]))
        return out["prompt_id"]

    def history(self, prompt_id: str) -> Optional[dict]:
        """The finished run's history entry, or None while it is still queued / running."""
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def fetch(self, ref: dict) -> bytes:
        """The bytes of one output file ({filename, subfolder, type}), via /view."""
        query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                                        "type": ref.get("type", "output")})
        return self._request(f"/view?{query}")

    def download(self, ref: dict, out_dir: Path) -> Path:
        """Fetch one output file ({filename, subfolder, type}) into out_dir."""
        data = self.fetch(ref)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / Path(ref["filename"]).name
        target.write_bytes(data)
        return target

    def wait_ready(self, seconds: float) -> None:
        """Wait up to `seconds` for the server to answer /system_stats (e.g. right after starting it)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.get_json("/system_stats")
                return
            except ComfyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def wait(self, prompt_id: str, timeout: float, quiet: bool = False) -> dict:
        """Follow progress (websocket if available, else polling) until the run ends; returns its history entry."""
        deadline = time.monotonic() + timeout
        try:
            import websocket  # websocket-client
        except ImportError:
            websocket = None
        if websocket is not None:
            try:
                self._follow_websocket(websocket, prompt_id, deadline, quiet)
            except (OSError, websocket.WebSocketException) as err:
                if not quiet:
                    print(f"(websocket unavailable: {err}; polling instead)", file=sys.stderr)
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry is not None and entry.get("status", {}).get("completed") is not None:
                return entry
            if entry is not None and entry.get("status", {}).get("status_str") == "error":
                return entry
            time.sleep(1.0)
        raise ComfyTimeout(f"timed out after {timeout:.0f}s waiting for prompt {prompt_id}")

    def _follow_websocket(self, websocket, prompt_id: str, deadline: float, quiet: bool) -> None:
        url = self.base.replace("http://", "ws://").replace("https://", "wss://") + f"/ws?clientId={self.client_id}"
        ws = websocket.create_connection(url, timeout=10)
        try:
            while time.monotonic() < deadline:
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    if self.history(prompt_id) is not None:
                        return
                    continue
                if not isinstance(raw, str):
                    continue  # binary preview frames
                msg = json.loads(raw)
                data = msg.get("data", {})
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                kind = msg.get("type")
                if kind == "progress" and not quiet:
                    print(f"  node {data.get('node')}: {data.get('value')}/{data.get('max')}", file=sys.stderr)
                elif kind == "executing":
                    if data.get("node") is None:
                        return
                    if not quiet:
                        print(f"running node {data.get('node')}", file=sys.stderr)
                elif kind in ("execution_error", "execution_interrupted", "execution_success"):
                    return
        finally:
            ws.close()


def _explain_error(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:2000]
    msg = data.get("error", {})
    text = msg.get("message", "") if isinstance(msg, dict) else str(msg)
    if isinstance(msg, dict) and msg.get("details"):
        text += f" ({msg['details']})"
    if data.get("node_errors"):
        text += "\n" + _format_node_errors(data["node_errors"])
    return text or body[:2000]


def _format_node_errors(node_errors: dict) -> str:
    lines = []
    for node_id, info in node_errors.items():
        for err in info.get("errors", []):
            lines.append(f"  node {node_id} ({info.get('class_type')}): {err.get('message')}: {err.get('details')}")
    return "\n".join(lines)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(prompt: dict, *, image: Optional[str] = None, video: Optional[str] = None,
                    text: Optional[str] = None, negative: Optional[str] = None, seed: Optional[int] = None,
                    sets: Optional[list[str]] = None) -> dict:
    """Return a copy of an API-format workflow with the input file, prompt text, seed and --set values changed."""
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        cls, inputs = node.get("class_type"), node.setdefault("inputs", {})
        if image is not None and cls in IMAGE_LOADERS:
            inputs[IMAGE_LOADERS[cls]] = image
        if video is not None and cls in VIDEO_LOADERS:
            inputs[VIDEO_LOADERS[cls]] = video
        if seed is not None:
            for key in ("seed", "noise_seed"):
                if key in inputs and not isinstance(inputs[key], list):
                    inputs[key] = seed
    encoders = [n for n in prompt.values() if n.get("class_type") == "CLIPTextEncode"]
    for wanted, value in (("prompt", text), ("negative", negative)):
        if value is None:
            continue
        hits = [n for n in encoders if _title_role(n) == wanted]
        if not hits and wanted == "prompt" and len(encoders) == 1:
            hits = encoders
        if not hits:
            raise ComfyError(f"no CLIPTextEncode node titled like a {wanted} prompt in this workflow; "
                             f"use --set ID.text=...")
        for n in hits:
            old = n["inputs"].get("text", "")
            # Refiner prompts keep MS-Vid2Vid-XL's quality suffix (", cinematic, High Contrast, ...").
            cut = old.find(REFINER_SUFFIX_START) if wanted == "prompt" else -1
            n["inputs"]["text"] = value + (old[cut:] if cut > 0 else "")
    for item in sets or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ComfyError(f"--set expects NODE_ID.INPUT=VALUE, got {item!r}")
        target, value = item.split("=", 1)
        node_id, name = target.split(".", 1)
        if node_id not in prompt:
            raise ComfyError(f"--set {item}: no node {node_id} in the workflow (ids: {', '.join(sorted(prompt))})")
        prompt[node_id]["inputs"][name] = _parse_value(value)
    return prompt


SAMPLERS = ("I2VGenXLSampler", "I2VGenXLRefineSampler", "KSampler", "KSamplerAdvanced", "I2VGenXLExtend")
SIZED = ("I2VGenXLConditioning", "I2VGenXLDetailEncode", "I2VGenXLLatentUpscale", "I2VGenXLVideoEncode",
         "I2VGenXLExtend")


def small_size(width: int, height: int) -> tuple[int, int]:
    """A tenth of a pixel size, multiples of 8, >= 64; sizes MS-Vid2Vid-XL accepts map to sizes it accepts."""
    w = max(64, int(round(width / 80)) * 8)
    h = max(64, int(round(height / 80)) * 8)
    if sizes.refiner_size_ok(width, height):
        return sizes.snap_refiner_size(w, h)
    return w, h


def small_frames(frames: int) -> int:
    """An eighth of the frames, at least 2 (0 = keep stays 0)."""
    return frames if frames <= 0 else max(2, frames // 8)


def smoke_sized(prompt: dict) -> dict:
    """A copy of an API workflow with smaller sizes, fewer frames and 2 sampling steps; nothing else changes."""
    g = json.loads(json.dumps(prompt))
    for node in g.values():
        inputs, cls = node.get("inputs", {}), node.get("class_type")
        if cls in SIZED and isinstance(inputs.get("width"), int) and isinstance(inputs.get("height"), int):
            inputs["width"], inputs["height"] = small_size(inputs["width"], inputs["height"])
        for key in ("length", "frames"):
            if cls in SIZED and isinstance(inputs.get(key), int):
                inputs[key] = small_frames(inputs[key])
        if cls in SAMPLERS and isinstance(inputs.get("steps"), int):
            inputs["steps"] = min(inputs["steps"], 2)
        if cls in SAMPLERS and isinstance(inputs.get("context_frames"), int) and inputs["context_frames"] > 0:
            inputs["context_frames"] = small_frames(inputs["context_frames"])  # windows still engage
            if isinstance(inputs.get("context_overlap"), int):
                inputs["context_overlap"] = min(small_frames(inputs["context_overlap"]), inputs["context_frames"] - 1)
    return g


def _title_role(node: dict) -> str:
    title = node.get("_meta", {}).get("title", "").lower()
    if "negative" in title:
        return "negative"
    if "prompt" in title:
        return "prompt"
    return ""


def output_files(entry: dict) -> list[dict]:
    """Every {filename, subfolder, type} the run's output nodes reported."""
    refs = []
    for node_out in entry.get("outputs", {}).values():
        for value in node_out.values():
            if isinstance(value, list):
                refs += [v for v in value if isinstance(v, dict) and "filename" in v]
    return refs


def load_api_workflow(path: Path) -> dict:
    """An API-format workflow from a file; a UI-format one is refused with what to use instead."""
    workflow = json.loads(Path(path).read_text())
    if "nodes" in workflow and "links" in workflow:
        raise UsageError(f"{path} is a UI-format workflow; use the matching NAME.api.json "
                         f"(File > Export (API) in ComfyUI)")
    return workflow


def build_prompt(workflow: dict, *, smoke: bool = False, image: Optional[str] = None, video: Optional[str] = None,
                 text: Optional[str] = None, negative: Optional[str] = None, seed: Optional[int] = None,
                 sets: Optional[list[str]] = None) -> dict:
    """The graph to submit: smoke-sized if asked, then the inputs, prompts, seed and --set values applied."""
    if smoke:
        workflow = smoke_sized(workflow)
    return apply_overrides(workflow, image=image, video=video, text=text, negative=negative, seed=seed, sets=sets)


def execution_error(entry: dict) -> str:
    """ComfyUI's own words for a failed run ("error in node ID (Type): message"), from its history entry."""
    lines = []
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            lines.append(f"error in node {data.get('node_id')} ({data.get('node_type')}): "
                         f"{data.get('exception_message', '').strip()}")
    return "\n".join(lines) or f"the run ended with status {entry.get('status', {}).get('status_str')!r}"


def execute(client: Client, prompt: dict, timeout: float, quiet: bool = True) -> dict:
    """Queue a prompt and wait for it; returns its history entry, or raises ComfyError with ComfyUI's message."""
    prompt_id = client.queue(prompt)
    if not quiet:
        print(f"queued {prompt_id}", file=sys.stderr)
    entry = client.wait(prompt_id, timeout, quiet=quiet)
    if entry.get("status", {}).get("status_str") != "success":
        raise ComfyError(execution_error(entry))
    return entry


def run(args: argparse.Namespace) -> int:
    """Upload inputs, queue, wait, download; returns the exit status."""
    try:
        workflow = load_api_workflow(args.workflow)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    client = Client(args.server, timeout=args.http_timeout)
    client.wait_ready(args.wait_server)
    image = client.upload(Path(args.image)) if args.image else None
    video = client.upload(Path(args.video)) if args.video else None
    prompt = build_prompt(workflow, smoke=args.smoke, image=image, video=video, text=args.prompt,
                          negative=args.negative, seed=args.seed, sets=args.set)
    started = time.monotonic()
    entry = execute(client, prompt, args.timeout, quiet=args.quiet)
    files = [client.download(ref, Path(args.out)) for ref in output_files(entry)]
    for f in files:
        print(f)
    if not args.quiet:
        print(f"done in {time.monotonic() - started:.1f}s, {len(files)} file(s)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(description="Run an API-format workflow on a ComfyUI server and fetch the outputs.")
    ap.add_argument("workflow", help="NAME.api.json (API format)")
    ap.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI address (default %(default)s)")
    ap.add_argument("--image", help="upload this image and use it in every LoadImage node")
    ap.add_argument("--video", help="upload this video and use it in every LoadVideo node")
    ap.add_argument("--prompt", help="text for the CLIPTextEncode nodes titled '... prompt' (refiner prompts keep "
                                     "their quality suffix)")
    ap.add_argument("--negative", help="text for the CLIPTextEncode nodes titled '... negative prompt'")
    ap.add_argument("--seed", type=int, help="seed of every node that has one (the samplers, Detail Encode's posterior draw)")
    ap.add_argument("--set", action="append", default=[], metavar="ID.INPUT=VALUE", help="override any input")
    ap.add_argument("--smoke", action="store_true",
                    help="shrink the run (1/10 size, 1/8 frames, 2 steps) to check a setup, e.g. on the demo weights")
    ap.add_argument("--out", default="output", help="where to save the results (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default %(default)s)")
    ap.add_argument("--wait-server", type=float, default=0, metavar="S",
                    help="wait up to S seconds for the server to come up (e.g. right after starting it)")
    ap.add_argument("--http-timeout", type=float, default=120, help="seconds per HTTP request")
    ap.add_argument("--quiet", action="store_true", help="print only the downloaded file paths")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ComfyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

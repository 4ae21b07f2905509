"""The pack's own HTTP routes under load, with hostile input mixed in, against a real ComfyUI server on the loopback.

    python bench/routes_load.py --start [--requests 40000 --connections 8 --out bench/measured/X.json]
    python bench/routes_load.py --url http://127.0.0.1:8188 --pid 12345

``--start`` starts ComfyUI with the pack exactly as the real-server tests do (COMFYUI_PATH / COMFYUI_PYTHON /
I2VGEN_DEMO_MODELS, tests/comfyui/conftest.py); ``--url`` and ``--pid`` point it at a running one. ``connections``
threads, each on one keep-alive HTTP connection, send the requests of `request_plan` in turn: every other request a
POST /i2vgen-xl/preview from a client id never seen before (so 40,000 requests post 20,000 distinct ids), the rest
the estimate routes, the model-file table and the preview switch, good and hostile (huge, negative, NaN, unicode,
missing keys, wrong JSON types, long strings). Every answer must be 200 or 400. The server's resident memory
(VmRSS of its process) is sampled every 0.2 s before, during and after; the kept preview settings are read from
GET /i2vgen-xl/preview at the end. Prints and writes JSON: requests/s, latency p50/p99, RSS start/peak/end, statuses.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfyui"))  # the test servers' start/stop and /proc reading, reused as is
from conftest import proc_memory_mib as rss_mb, start_server, stop_server  # noqa: E402
WARMUP_REQUESTS = 500  # first-call allocations (imports, caches) happen here, before the "start" RSS

GOOD_CONDITIONING = {"width": "256", "height": "256", "length": "16", "batch_size": "1", "image_latent": "1"}
GOOD_REFINE = {"width": "1280", "height": "720", "frames": "32", "batch_size": "1", "context_frames": "16",
               "cfg": "7.5", "unet_name": "non_ema_0035000.pth", "weight_dtype": "auto", "attention": "auto"}
HOSTILE_VALUES = ["-1", "0", "9" * 30, "9" * 5000, "nan", "inf", "-inf", "1e400", "1.5", "", " ", "ü€😀",
                  "../../etc/passwd", "x" * 2000, "0x10", "None", "[]"]


def hostile(query: dict, i: int) -> dict:
    """`query` with one value replaced by a hostile one, or one key dropped (chosen by `i`)."""
    keys = sorted(query)
    key = keys[i % len(keys)]
    if i % (len(HOSTILE_VALUES) + 1) == len(HOSTILE_VALUES):
        return {k: v for k, v in query.items() if k != key}
    return {**query, key: HOSTILE_VALUES[i % len(HOSTILE_VALUES)]}


def request_plan(i: int) -> tuple[str, str, bytes | None]:
    """(method, path, body) of request number `i`: even numbers post a new client id, odd ones cycle the rest."""
    if i % 2 == 0:
        return "POST", "/i2vgen-xl/preview", json.dumps({"client_id": f"load-{i // 2}", "animated": True}).encode()
    kind, j = (i // 2) % 8, i // 16
    if kind == 0:
        return "GET", "/i2vgen-xl/memory_estimate?" + urllib.parse.urlencode(GOOD_CONDITIONING), None
    if kind == 1:
        return "GET", "/i2vgen-xl/memory_estimate?" + urllib.parse.urlencode(hostile(GOOD_CONDITIONING, j)), None
    if kind == 2:
        return "GET", "/i2vgen-xl/memory_estimate/refine?" + urllib.parse.urlencode(GOOD_REFINE), None
    if kind == 3:
        return "GET", "/i2vgen-xl/memory_estimate/refine?" + urllib.parse.urlencode(hostile(GOOD_REFINE, j)), None
    if kind == 4:
        junk = HOSTILE_VALUES[j % len(HOSTILE_VALUES)]
        return "GET", "/i2vgen-xl/model_files?" + urllib.parse.urlencode({"x": junk}), None
    if kind == 5:
        return "GET", "/i2vgen-xl/preview", None
    bodies = [b"", b"not json", b"[1, 2]", b"null", b'{"client_id": 7, "animated": true}',
              b'{"client_id": "a", "animated": "yes"}', b'{"client_id": "\\ud800", "animated": true}', b"\xff\xfe\x00",
              json.dumps({"client_id": "x" * 5000, "animated": True}).encode()]
    return "POST", "/i2vgen-xl/preview", bodies[j % len(bodies)]


class RssSampler(threading.Thread):
    """Samples a process's RSS every `period` seconds until stopped."""

    def __init__(self, pid: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.period, self.samples = pid, period, []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append(value)
            self._done.wait(self.period)

    def stop(self) -> list[float]:
        self._done.set()
        self.join()
        return self.samples


def send_all(host: str, port: int, numbers: list[int], statuses: Counter, latencies: list[float],
             failures: list[str], lock: threading.Lock) -> None:
    """Send the planned requests `numbers` over one keep-alive connection (reopened if the server closes it)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    mine, lat = Counter(), []
    for i in numbers:
        method, path, body = request_plan(i)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        start = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            status = response.status
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            status, payload = f"error {type(err).__name__}", b""
        lat.append(time.perf_counter() - start)
        mine[status] += 1
        if status not in (200, 400):
            with lock:
                failures.append(f"{method} {path[:200]} -> {status} {payload[:300]!r}")
    conn.close()
    with lock:
        statuses.update(mine)
        latencies.extend(lat)


def run_load(base_url: str, pid: int, requests: int, connections: int = 8) -> dict:
    """Send `requests` planned requests (after WARMUP_REQUESTS) from `connections` threads; the figures as a dict."""
    url = urllib.parse.urlsplit(base_url)
    host, port = url.hostname, url.port or 80
    lock, failures = threading.Lock(), []
    warm_statuses, warm_lat = Counter(), []
    send_all(host, port, [requests + k for k in range(WARMUP_REQUESTS)], warm_statuses, warm_lat, failures, lock)
    sampler = RssSampler(pid)
    rss_start = rss_mb(pid)
    sampler.start()
    statuses, latencies = Counter(), []
    threads = [threading.Thread(target=send_all, args=(host, port, list(range(c, requests, connections)), statuses,
                                                       latencies, failures, lock)) for c in range(connections)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    time.sleep(1.0)  # let the server settle before the end sample
    samples = sampler.stop()
    rss_end = rss_mb(pid)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", "/i2vgen-xl/preview")
    switch = json.loads(conn.getresponse().read())
    conn.close()
    latencies.sort()
    return {
        "requests": requests, "connections": connections, "warmup_requests": WARMUP_REQUESTS,
        "distinct_preview_client_ids": (requests + 1) // 2,
        "seconds": round(seconds, 2), "requests_per_s": round(requests / seconds, 1),
        "latency_ms": {"p50": round(1000 * statistics.median(latencies), 2),
                       "p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
                       "max": round(1000 * latencies[-1], 2)},
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "warmup_statuses": {str(k): v for k, v in sorted(warm_statuses.items(), key=str)},
        "failures": failures[:20], "failure_count": len(failures),
        "rss_mb": {"start": rss_start, "peak": max(samples + [rss_start or 0.0, rss_end or 0.0]), "end": rss_end,
                   "samples": len(samples)},
        "preview_settings_kept": switch.get("stored_settings"), "preview_settings_limit": switch.get("max_settings"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", action="store_true", help="start ComfyUI with the pack (as the tests do)")
    parser.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8188 (with --pid)")
    parser.add_argument("--pid", type=int, help="the running server's process id (for its RSS)")
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    if args.start == bool(args.url):
        parser.error("give either --start or --url with --pid")
    server = None
    if args.start:
        server = start_server(Path(tempfile.mkdtemp(prefix="routes_load_")))
        base, pid = server.client.base, server.process.pid
    else:
        base, pid = args.url, args.pid
    try:
        result = run_load(base, pid, args.requests, args.connections)
    finally:
        if server is not None:
            stop_server(server)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    ok = result["failure_count"] == 0 and set(result["statuses"]) <= {"200", "400"}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

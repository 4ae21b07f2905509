"""Soak: 30 prompts in a row on one server (the four shipped workflows shrunk, with new seeds so they really run,
mixed with invalid prompts and one interrupt mid-run). Every valid prompt succeeds, every invalid one is answered,
the server's resident memory (VmRSS) after the last prompt is within 10 % of after the first, and nothing is left
in the temp folder. The memory curve is printed and written to the test's temporary folder (soak_memory.json)."""

from __future__ import annotations

import json

import pytest

from conftest import PromptRejected, REPO, proc_memory_mib, start_server, stop_server
from test_hardening import BAD
from workflow_utils import load_api_workflow, shrink

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

WORKFLOWS = ["i2vgen_xl_cascade", "i2vgen_xl_image_to_video", "ms_image2video_cascade", "refine_video"]
TOTAL = 30


def rss_mib(pid: int) -> float:
    rss = proc_memory_mib(pid)
    if rss is None:
        raise RuntimeError("no VmRSS")
    return rss


def reseed(g: dict, seed: int) -> dict:
    for node in g.values():
        if "seed" in node.get("inputs", {}):
            node["inputs"]["seed"] = seed
    return g


def plan() -> list[tuple[str, str, object]]:
    """(kind, label, payload): valid workflows round-robin, an invalid prompt every third slot, one interrupt."""
    graphs = {name: shrink(load_api_workflow(REPO / "workflows" / "api" / f"{name}.api.json")) for name in WORKFLOWS}
    bad = iter([BAD[k] for k in (0, 13, 2, 5, 7, 9, 14, 10, 12, 1)])  # validation and execution errors
    items, w = [], 0
    for i in range(TOTAL):
        if i == 13:
            items.append(("interrupt", "interrupt image_to_video mid-run", graphs["i2vgen_xl_image_to_video"]))
        elif i % 3 == 2:
            case, mutate, expected, _ = next(bad)
            g = json.loads(json.dumps(graphs["i2vgen_xl_image_to_video"]))
            mutate(g)
            items.append(("invalid", case, g))
        else:
            name = WORKFLOWS[w % len(WORKFLOWS)]
            w += 1
            items.append(("valid", name, graphs[name]))
    return items


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("soak"))
    try:
        yield server
    finally:
        stop_server(server)


def test_soak_30_prompts(soak_server, tmp_path, record_property):
    srv = soak_server
    client, pid = srv.client, srv.process.pid
    curve, failures = [], []
    for i, (kind, label, graph) in enumerate(plan()):
        g = reseed(json.loads(json.dumps(graph)), 1000 + i)
        if kind == "interrupt":
            for node in g.values():
                if node["class_type"] == "I2VGenXLSampler":
                    node["inputs"]["steps"] = 30

            def on_event(ev, data, result, sent=[]):  # noqa: B006 - one interrupt per run
                if ev == "progress" and not sent and data.get("value", 0) >= 2:
                    sent.append(1)
                    client.interrupt()
            result = client.run(g, timeout=1800, on_event=on_event)
            status = result.status
            ok = status == "interrupted"
        else:
            try:
                result = client.run(g, timeout=1800)
                status = result.status
                message = (result.error or {}).get("exception_message", "")
            except PromptRejected as err:
                status, message = "rejected", err.messages()
            ok = status == "success" if kind == "valid" else (status in ("rejected", "error") and bool(message))
        alive = srv.process.poll() is None
        rss = rss_mib(pid) if alive else None
        curve.append({"prompt": i + 1, "kind": kind, "label": label, "status": status, "vmrss_mib": rss})
        print(f"[soak] {i + 1:2d} {kind:9s} {label:45s} {status:12s} VmRSS {rss:8.0f} MiB", flush=True)
        if not ok or not alive:
            failures.append((i + 1, kind, label, status))
        assert alive, f"the server died at prompt {i + 1} ({label})"
    (tmp_path / "soak_memory.json").write_text(json.dumps(curve, indent=1))
    record_property("soak_memory_curve", json.dumps(curve))
    assert not failures, failures
    first, last = curve[0]["vmrss_mib"], curve[-1]["vmrss_mib"]
    growth = (last - first) / first
    print(f"[soak] VmRSS after the first prompt {first:.0f} MiB, after the last {last:.0f} MiB ({growth:+.1%}); "
          f"max {max(c['vmrss_mib'] for c in curve):.0f} MiB")
    assert abs(growth) <= 0.10, (first, last)
    temp = srv.output_dir.parent / "temp"
    left = [str(p) for p in temp.rglob("*") if p.is_file()]
    assert not left, f"files left in the temp folder: {left[:10]}"

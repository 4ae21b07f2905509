"""The pack's own HTTP routes against hostile input and under load, on a real ComfyUI server.

Fuzzed with hypothesis: GET /i2vgen-xl/memory_estimate, /i2vgen-xl/memory_estimate/refine, /i2vgen-xl/model_files
with random query strings (the routes' own keys and others; huge, negative, NaN, infinite, unicode, long, empty
values; raw bytes), and POST /i2vgen-xl/preview with random JSON of every type and random bytes. Every answer is 200
or 400 with a JSON body (never a 500). Then 2,000 requests of bench/routes_load.py's mix (half of them new client ids
posted to /i2vgen-xl/preview): all 200 or 400, the preview settings stay within their limit, and the server's memory
stays within a loose bound (no timing is asserted).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest

from conftest import REPO
from helpers import module_from_path  # tests/support/helpers.py

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

pytestmark = pytest.mark.comfyui

ROUTE_KEYS = {
    "/i2vgen-xl/memory_estimate": ["width", "height", "length", "batch_size", "image_latent", "clip_vision_output"],
    "/i2vgen-xl/memory_estimate/refine": ["width", "height", "frames", "batch_size", "context_frames", "cfg",
                                          "unet_name", "weight_dtype", "attention"],
    "/i2vgen-xl/model_files": ["files", "variant"],
}
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

numbers = st.one_of(st.integers(min_value=-10 ** 400, max_value=10 ** 400), st.floats(allow_nan=True),
                    st.sampled_from([0, 1, -1, 64, 1280, 2 ** 31, 2 ** 63, -2 ** 63]))
values = st.one_of(numbers.map(str), st.text(max_size=40), st.sampled_from(
    ["", " ", "nan", "NaN", "inf", "-inf", "1e400", "1e308", "0x40", "1_000", "９", "٣", "9" * 5000, "9" * 320,
     "1" + "0" * 400, "x" * 3000, "../../x", "non_ema_0035000.pth", "fp8_e4m3fn", "sage", "auto", "1", "0"]))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


def fetch(server, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """(status, body) of one request, whatever the status."""
    url = urllib.parse.urlsplit(server.client.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body is not None else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_answer(status: int, body: bytes, what: str) -> None:
    """200 or 400, and a JSON body when the route answered (aiohttp's own 400 for an unreadable request is text)."""
    assert status in (200, 400), f"{what} -> {status}: {body[:500]!r}"
    if status == 200:
        json.loads(body)


def good_query(route: str) -> dict:
    """A query the route answers with 200 (bench/routes_load.py's), {} for the model-file table."""
    load = routes_load()
    return {"/i2vgen-xl/memory_estimate": load.GOOD_CONDITIONING,
            "/i2vgen-xl/memory_estimate/refine": load.GOOD_REFINE}.get(route, {})


def spoiled(good: dict):
    """`good` with one key given any value, or dropped: one bad value among good ones reaches the arithmetic."""
    if not good:
        return st.just({})

    def spoil(key, value):
        return {k: v for k, v in {**good, key: value}.items() if v is not None}

    return st.builds(spoil, st.sampled_from(sorted(good)), st.one_of(values, st.none()))


@pytest.mark.parametrize("route", sorted(ROUTE_KEYS))
def test_query_routes_answer_200_or_400_to_any_query(comfy_server, route):
    keys = st.one_of(st.sampled_from(ROUTE_KEYS[route]), st.text(min_size=1, max_size=12))
    queries = st.one_of(st.dictionaries(keys, values, max_size=len(ROUTE_KEYS[route]) + 2), spoiled(good_query(route)))

    @FUZZ
    @given(query=queries)
    def fuzz(query):
        path = f"{route}?{urllib.parse.urlencode(query)}"
        check_answer(*fetch(comfy_server, "GET", path), path[:300])

    fuzz()


@pytest.mark.parametrize("route", sorted(ROUTE_KEYS))
def test_query_routes_answer_200_or_400_to_raw_bytes(comfy_server, route):
    @FUZZ
    @given(raw=st.binary(max_size=200))
    def fuzz(raw):
        path = f"{route}?{urllib.parse.quote_from_bytes(raw, safe='=&')}"
        check_answer(*fetch(comfy_server, "GET", path), path[:300])

    fuzz()


def test_preview_post_answers_200_or_400_to_any_body(comfy_server):
    bodies = st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"client_id": st.one_of(st.text(max_size=200), json_values),
                               "animated": st.one_of(st.booleans(), json_values)}).map(
                                   lambda v: json.dumps(v).encode()),
        st.binary(max_size=300))

    @FUZZ
    @given(body=bodies)
    def fuzz(body):
        status, answer = fetch(comfy_server, "POST", "/i2vgen-xl/preview", body)
        check_answer(status, answer, f"POST /i2vgen-xl/preview {body[:200]!r}")
        if status == 400:
            assert "expected JSON" in json.loads(answer)["error"]

    fuzz()


def test_good_estimates_are_still_answered(comfy_server):
    status, body = fetch(comfy_server, "GET", "/i2vgen-xl/memory_estimate?width=256&height=256&length=16")
    assert status == 200 and json.loads(body)["lines"]
    status, body = fetch(comfy_server, "GET", "/i2vgen-xl/memory_estimate?width=nan&height=256")
    assert status == 400 and "integer" in json.loads(body)["error"]


def routes_load():
    """bench/routes_load.py (its request mix and load runner)."""
    return module_from_path("_routes_load", REPO / "bench" / "routes_load.py")


def test_two_thousand_requests_all_answered_and_memory_bounded(comfy_server, record_property):
    result = routes_load().run_load(comfy_server.client.base, comfy_server.process.pid, requests=2000, connections=4)
    record_property("routes_load", json.dumps({k: result[k] for k in ("statuses", "rss_mb", "latency_ms")}))
    assert result["failure_count"] == 0, result["failures"]
    assert set(result["statuses"]) <= {"200", "400"} and sum(result["statuses"].values()) == 2000
    assert result["preview_settings_kept"] <= result["preview_settings_limit"]
    if result["rss_mb"]["start"] is not None:  # Linux only; loose: well above the noise of a server holding torch
        assert result["rss_mb"]["end"] - result["rss_mb"]["start"] < 64, result["rss_mb"]

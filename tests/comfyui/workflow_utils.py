"""Helpers for running the shipped workflows in tests: shrink an API-format graph, predict the video it writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from i2vgen_core.sizes import snap_refiner_size

REPO = Path(__file__).resolve().parents[2]


def _load_headless():
    """workflows/headless_api.py, imported by path (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("_i2vgen_headless_api", REPO / "workflows" / "headless_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADLESS = _load_headless()

SAMPLERS, SIZED = HEADLESS.SAMPLERS, HEADLESS.SIZED
shrink = HEADLESS.smoke_sized  # the submitted copy: what `headless_api.py --smoke` runs


def _source(g: dict, link) -> tuple[dict, int] | tuple[None, None]:
    if isinstance(link, list) and len(link) == 2 and str(link[0]) in g:
        return g[str(link[0])], int(link[1])
    return None, None


def expected_latent(g: dict, link) -> dict:
    """{frames, width, height, batch} a LATENT link carries, as far as the graph says (None = unknown)."""
    node, _ = _source(g, link)
    if node is None:
        return {"frames": None, "width": None, "height": None, "batch": 1}
    cls, inputs = node["class_type"], node["inputs"]
    if cls == "I2VGenXLExtend":  # the new clip minus its first frame is appended
        up = expected_latent(g, inputs.get("samples"))
        length = inputs.get("length")
        frames = up["frames"] + length - 1 if isinstance(up["frames"], int) and isinstance(length, int) else None
        return {**up, "frames": frames}
    if cls in SAMPLERS:
        return expected_latent(g, inputs.get("latent_image"))
    if cls == "I2VGenXLConditioning":
        return {"frames": inputs.get("length"), "width": inputs.get("width"), "height": inputs.get("height"),
                "batch": inputs.get("batch_size", 1)}
    if cls == "I2VGenXLLatentUpscale":
        up = expected_latent(g, inputs.get("samples"))
        w, h = inputs.get("width"), inputs.get("height")
        if inputs.get("snap_for_refiner", True) and isinstance(w, int) and isinstance(h, int):
            w, h = snap_refiner_size(w, h)
        frames = inputs.get("frames", 0)
        return {"frames": frames if isinstance(frames, int) and frames > 0 else up["frames"], "width": w,
                "height": h, "batch": up["batch"]}
    if cls == "I2VGenXLVideoEncode":
        return {"frames": None, "width": inputs.get("width"), "height": inputs.get("height"), "batch": 1}
    return {"frames": None, "width": None, "height": None, "batch": 1}


def expected_video(g: dict, save_id: str) -> dict | None:
    """What a SaveVideo node should write: frames, width, height, whether a grey last frame may be dropped."""
    video_node, _ = _source(g, g[save_id]["inputs"].get("video"))
    if video_node is None or video_node["class_type"] != "CreateVideo":
        return None
    dec, _ = _source(g, video_node["inputs"].get("images"))
    if dec is None or dec["class_type"] != "I2VGenXLVideoDecode":
        return None
    lat = expected_latent(g, dec["inputs"].get("samples"))
    frames = lat["frames"] * lat["batch"] if isinstance(lat["frames"], int) else None
    return {"frames": frames, "width": lat["width"], "height": lat["height"],
            "may_drop_last": bool(dec["inputs"].get("drop_grey_last_frame", False))}


def load_api_workflow(path: Path) -> dict:
    """The API-format nodes of a workflows/*.api.json file."""
    prompt = json.loads(Path(path).read_text())
    return {k: v for k, v in prompt.items() if isinstance(v, dict) and "class_type" in v}


def check_saved_videos(server, result, submitted: dict, name: str) -> list[dict]:
    """Every SaveVideo of `submitted` wrote a video with the requested frames and size; returns the probes."""
    saves = [nid for nid, n in submitted.items() if n["class_type"] == "SaveVideo"]
    assert saves, f"{name} has no SaveVideo node (workflows save mp4 via CreateVideo -> SaveVideo)"
    probes = []
    for nid in saves:
        out = result.executed.get(nid) or ((result.history or {}).get("outputs") or {}).get(nid)
        assert out and out.get("images"), f"SaveVideo {nid} wrote nothing"
        item = out["images"][0]
        video = server.probe_video(server.output_dir / item.get("subfolder", "") / item["filename"])
        probes.append(video)
        want = expected_video(submitted, nid)
        if want is None:
            continue
        if want["width"] is not None:
            assert (video["width"], video["height"]) == (want["width"], want["height"]), (name, video, want)
        if want["frames"] is not None:
            allowed = {want["frames"], want["frames"] - 1} if want["may_drop_last"] else {want["frames"]}
            assert video["frames"] in allowed, (name, video, want)
    return probes

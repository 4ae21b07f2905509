"""Previews and model help in a real ComfyUI server and a real browser (preview_check.mjs, Chromium + playwright-core).

* Animated previews: a graph with I2VGen-XL Refine Sampler and ComfyUI's KSampler on the pack's MODEL runs from the
  browser; during the run each sampler node's preview widget receives sprite sheets of all F frames (counted: the
  widget holds F frame bitmaps), one per step, before the run ends, and keeps playing them (every frame drawn).
* Opt-out: with the setting "I2VGen-XL.AnimatedPreview" off, no sheet arrives and ComfyUI's own preview does.
* Missing models: a shipped workflow with its UNet and VAE files renamed opens ComfyUI's missing-models dialog listing
  the downloads (from properties.models), and the loader nodes show which file to get, from where, into which folder.
* One size: I2VGen-XL Conditioning with image_latent linked shows the Detail Encode size and greys out its own.
Screenshots go to the test's tmp folder (printed).

Setup as for test_frontend.py (Chromium, playwright-core on NODE_PATH, COMFYUI_PATH / COMFYUI_PYTHON).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from test_frontend import (  # noqa: F401  (browser_tools: the fixture)
    BROWSER_TIMEOUT_S, MODES, browser_tools, run_browser_script, served_frontend_version, skip_preview_renderer)

pytestmark = pytest.mark.comfyui

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCRIPT = HERE / "preview_check.mjs"
FRAMES = 8
W, H = 128, 80  # latent 16x10: a size MS-Vid2Vid-XL's tiny demo UNet takes
REFINE_STEPS, KSAMPLER_STEPS = 3, 2
WORKFLOW = REPO / "workflows" / "i2vgen_xl_cascade.json"
RUN_TIMEOUT_S = max(BROWSER_TIMEOUT_S, 1300.0)  # two sampling runs on a (possibly busy) CPU


def preview_prompt() -> dict:
    """MS-Vid2Vid-XL (text only; a zero text embedding here) through our Refine Sampler, then ComfyUI's KSampler."""
    return {
        "1": {"class_type": "I2VGenXLModelLoader", "inputs": {"unet_name": "non_ema_0035000.pth",
                                                              "weight_dtype": "auto", "attention": "auto"}},
        "2": {"class_type": "I2VGenXLConditioning", "inputs": {"width": W, "height": H, "length": FRAMES, "fps": 8,
                                                               "batch_size": 1}},
        "3": {"class_type": "I2VGenXLRefineSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 1], "latent_image": ["2", 2], "seed": 1,
            "strength": 1.0, "steps": REFINE_STEPS, "cfg": 7.5, "guidance_rescale": 0.2, "sampler_name": "euler",
            "scheduler": "simple"}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 1], "latent_image": ["3", 0], "seed": 2,
            "steps": KSAMPLER_STEPS, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "i2vgen_preview"}},
    }


def warning_prompt() -> dict:
    """I2VGen-XL Conditioning set up for 1280x704 x 24 frames: on a --cpu server (fp32) its estimate, about 37 GiB,
    exceeds the free RAM of a machine like this one (24 GiB) but its smallest form (fp8 weights, CFG unbatched,
    about 15 GiB) fits, so it runs and warns (fps 17: not cached elsewhere)."""
    return {"1": {"class_type": "I2VGenXLConditioning",
                  "inputs": {"width": 1280, "height": 704, "length": 24, "fps": 17, "batch_size": 1}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}


@pytest.fixture(scope="module", params=MODES)
def report(request, comfyui_install, browser_tools, comfy_server, pack_name, tmp_path_factory) -> dict:  # noqa: F811
    """Run preview_check.mjs once per node renderer (classic canvas, Nodes 2.0); its JSON report."""
    skip_preview_renderer(request.param)
    work = tmp_path_factory.mktemp(f"previews-{request.param}")
    shots = work / "screenshots"
    prompt = preview_prompt()
    config = {"url": comfy_server.client.base, "out": str(work / "report.json"), "chromium": browser_tools["chromium"],
              "screenshot_dir": str(shots), "prompt": prompt, "samplers": ["3", "4"], "frames": FRAMES,
              "workflow": str(WORKFLOW), "timeout_ms": 1_200_000, "estimate_nodes": ["2", "3"],
              "warning_prompt": warning_prompt(), "pack_url": f"/extensions/{pack_name}/", "mode": request.param}
    data = run_browser_script(SCRIPT, config, work, browser_tools, comfy_server, RUN_TIMEOUT_S)
    out = Path(config["out"])
    keep = os.environ.get("I2VGEN_TEST_ARTIFACTS")  # optional folder that outlives pytest's tmp
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for p in shots.glob("*.png"):
            shutil.copy(p, Path(keep) / f"{request.param}-{p.name}")
        shutil.copy(out, Path(keep) / f"preview_report-{request.param}.json")
    print(f"\n[previews] screenshots in {shots}: {sorted(p.name for p in shots.glob('*.png'))}")
    data["screenshots"] = sorted(str(p) for p in shots.glob("*.png"))
    return data


def _ours(entry: dict) -> bool:
    text = " ".join(str(entry.get(k, "")) for k in ("text", "url", "message", "stack"))
    return any(s in text for s in ("preview.js", "model_help.js", "one_size.js", "I2VGenXL."))


def test_extensions_register_and_tell_the_server(report):
    for name in ("I2VGenXL.AnimatedPreview", "I2VGenXL.ModelHelp", "I2VGenXL.OneSize"):
        assert report["extensions"].count(name) == 1, (name, report["extensions"])
    assert report["setting_default"] is True
    assert {"client_id": report["client_id"], "animated": True} in report["setting_posts"], report["setting_posts"]
    errors = [c for c in report["console"] if c["type"] == "error" and _ours(c)]
    errors += [e for e in report["page_errors"] if _ours(e)]
    assert not errors, json.dumps(errors, indent=1)[:4000]


def test_every_frame_reaches_both_samplers_during_the_run(report):
    run = report["on_run"]
    assert run["done"] and run["done"][0]["kind"] == "execution_success", run["done"]
    end = run["done"][0]["t"]
    for node, steps in (("3", REFINE_STEPS), ("4", KSAMPLER_STEPS)):
        layouts = [x for x in run["layouts"] if x["node"] == node]
        sheets = [x for x in run["sheets"] if x["node"] == node]
        assert len(layouts) == steps and len(sheets) == steps, (node, len(layouts), len(sheets))
        assert all(x["frames"] == FRAMES and x["cols"] * x["rows"] >= FRAMES for x in layouts), layouts
        assert all(x["t"] <= end for x in sheets), "sheets arrived after the run ended"
        got = report["previews_at_end"][node]
        print(f"[previews] node {node} ({got['type']}): {got['frames']} frames per sheet, {got['sheets']} sheets, "
              f"frame {got['frame_size']}, {got['shown']} distinct frames drawn by the end of the run")
        assert got["frames"] == FRAMES, got  # all F frames counted in the widget
        assert got["sheets"] == steps and got["widget_in_dom"], got
        assert got["frame_size"] == [W // 8, H // 8], got  # latent -> RGB at latent resolution
    assert not [x for x in run["core"] if x["node"] in ("3", "4")], "ComfyUI's first-frame preview was also sent"


def test_the_job_thumbnail_is_the_first_frame_not_the_sheet(report):
    """Newer frontends keep a job's last preview that came with a prompt id as its thumbnail in the queue: the sheets
    come without one, and frame 0 alone (display id i2vgen-xl-thumbnail, which no node has) with it, once a step."""
    run = report["on_run"]
    assert all(x["job"] is None for x in run["sheets"]), run["sheets"]
    for node, steps in (("3", REFINE_STEPS), ("4", KSAMPLER_STEPS)):
        thumbs = [x for x in run["thumbnails"] if x["node"] == node]
        assert len(thumbs) == steps, (node, thumbs)
        if served_frontend_version() >= (1, 58):  # 1.27.10's event has no prompt id and no queue thumbnails
            assert all(x["job"] for x in thumbs), thumbs


def test_the_preview_keeps_animating_every_frame(report):
    for node in ("3", "4"):
        before, after = report["previews_at_end"][node], report["previews_later"][node]
        assert after["draws"] >= before["draws"] + 10, (before, after)  # ~8 fps for 2.5 s
        assert after["shown"] == FRAMES, after
        print(f"[previews] node {node}: {after['draws'] - before['draws']} frames drawn in 2.5 s after the run, "
              f"all {after['shown']} distinct")
    assert any(p.endswith("animated_preview.png") for p in report["screenshots"])


def test_setting_off_gives_comfyuis_preview(report):
    assert {"client_id": report["client_id"], "animated": False} in report["setting_posts"]
    run = report["off_run"]
    assert run["done"] and run["done"][0]["kind"] == "execution_success", run["done"]
    assert run["sheets"] == [] and run["layouts"] == [], "animated previews were sent with the setting off"
    assert {x["display"] for x in run["core"]} >= {"3", "4"}, run["core"]


def test_missing_models_dialog_offers_the_downloads(report):
    """ComfyUI's own missing-models list from the workflow's properties.models: a dialog with the links in older
    frontends; in newer ones the "View details" side panel (Issues), a Download button per file (the link behind it)."""
    dialogs = "\n".join(report["missing_dialogs"] + report.get("missing_mentions", []))
    assert "missing_non_ema_0035000.pth" in dialogs and "missing_i2vgen_xl_vae.fp16.safetensors" in dialogs, dialogs
    offered = ("huggingface.co/ali-vilab/MS-Vid2Vid-XL" in dialogs or "Only allowed suffixes" in dialogs
               or ("Missing Models" in dialogs and "Download" in dialogs))
    assert offered, dialogs


def test_loader_nodes_say_what_to_get_before_a_run(report):
    renamed = {k: v for k, v in report["missing_help"].items() if v["renamed"]}
    assert len(renamed) >= 3, report["missing_help"]
    for node_id, got in renamed.items():
        text = " ".join(got["help"])
        assert got["help"] and got["texts"] == got["help"] and got["on_page"], got
        assert "huggingface.co/ali-vilab/" in text and "into models/" in text, got
    present = [v for v in report["missing_help"].values() if not v["renamed"] and v["type"] in
               ("CLIPLoader", "CLIPVisionLoader", "I2VGenXLModelLoader", "VAELoader")]
    assert present and all(v["help"] == [] for v in present), present


def test_conditioning_takes_the_detail_encode_size(report):
    rules = report["one_size"]
    assert rules, "no I2VGenXLConditioning in the workflow"
    linked = [r for r in rules if r["rule"]["linked"]]
    assert linked, rules
    for r in linked:
        assert r["rule"]["text"].startswith("size from image_latent: ") and r["rule"]["text"] in r["texts"], r
        assert r["disabled"] == [True, True], r


def test_memory_estimate_is_drawn_under_the_nodes(report):
    """js/estimate.js draws the Python estimate under I2VGen-XL Conditioning and the Refine Sampler after a run."""
    for node in ("2", "3"):
        got = report["estimates"][node]
        assert got["lines"] and "Estimated peak" in got["lines"][0] and "GiB" in got["lines"][0], got
        drawn = " ".join(got["drawn"])
        assert "Estimated peak" in drawn and "GiB" in drawn, got
        print(f"[estimate] node {node} ({got['type']}): {got['lines']}")


def test_memory_warning_is_drawn_with_what_to_change(report):
    assert report["warning_run"] and report["warning_run"][0]["kind"] == "execution_success", report["warning_run"]
    got = report["warning_estimates"]["1"]
    warning = [line for line in (got["lines"] or []) if line.startswith("WARNING")]
    assert warning, got
    drawn = " ".join(got["drawn"])
    for word in ("WARNING", "fp8", "fewer frames", "tile"):
        assert word in drawn, (word, got)
    assert any(p.endswith("memory_warning_on_node.png") for p in report["screenshots"])
    print(f"[estimate] warning drawn on the node: {warning[0][:200]}")

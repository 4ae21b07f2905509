"""The frontend side in a real browser: ComfyUI's own web app, headless Chromium, this package as a custom node.

frontend_check.mjs (beside this file; Node + playwright-core) opens the page of the ``comfy_server`` fixture's server
in Debian's Chromium (fresh profile, no network but the server), waits for ``window.app``, loads every
workflows/*.json with ``app.loadGraphData`` and converts it with ``app.graphToPrompt``, and writes what it saw as
JSON; the tests below check it:

* js/i2vgen_xl.js is served and registers its extension once, with no console error or page error from it;
* each UI workflow opens with no unknown node (no "Some Nodes Are Missing" dialog), the file's node count, ids
  and types, every widget holding the file's value (by name against workflows/api/NAME.api.json, so a wrong
  widget order fails), saving gives back the file's widgets_values, and our nodes get the pack's colour;
* ``graphToPrompt()`` gives exactly workflows/api/NAME.api.json (class types, widget values and links);
* the Latent Upscale size hint drawn by the extension agrees with ``i2vgen_core.sizes.snap_refiner_size``;
* GET /workflow_templates lists the pack with exactly the UI workflows (no ``.api`` ones), and the files are
  served where the template browser fetches them (no browser needed for this one).

Setup, once per machine (CI has no ComfyUI, so all of this skips there):

    apt-get install -y chromium                                  # /usr/bin/chromium (or set CHROMIUM=/path)
    npm install --prefix /work/node_tools playwright-core        # any folder outside the repository

then run with that node_modules on NODE_PATH (a global ``npm install -g playwright-core`` is found without it):

    NODE_PATH=/work/node_tools/node_modules COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/ComfyUI/python \\
        python -m pytest tests/comfyui/browser/test_frontend.py -s

Never ``npx playwright install``: the test drives the system Chromium only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCRIPT = HERE / "frontend_check.mjs"
UI_WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
EXTENSION_NAME = "I2VGenXL.NodeHelpers"
EXTENSION_FILE = "i2vgen_xl.js"
NODE_PREFIX = "I2VGenXL"
NODE_COLOR, NODE_BGCOLOR = "#233047", "#1b2433"
SNAP_CASES = [(1280, 720), (1280, 704), (640, 352), (1024, 576), (1000, 500), (448, 256), (96, 40), (1920, 1080)]
MISSING_DIALOG = re.compile(r"missing|were not found", re.IGNORECASE)
BROWSER_TIMEOUT_S = float(os.environ.get("FRONTEND_TIMEOUT", "600"))


# ------------------------------------------------------------------------------------------------ tools
def _node_path(node: str) -> str:
    """NODE_PATH for the script: the caller's, plus npm's global folder (where ``npm install -g`` puts packages)."""
    parts = [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
        if root and Path(root).is_dir():
            parts.append(root)
    return os.pathsep.join(parts)


@pytest.fixture(scope="session")
def browser_tools() -> dict:
    """Node, Chromium and playwright-core, or skip with what is missing and how to install it."""
    node = shutil.which("node")
    if not node:
        pytest.skip("the browser test needs Node.js (`node` is not on PATH)")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not (Path(chromium).is_file() and os.access(chromium, os.X_OK)):
        pytest.skip(f"the browser test needs Chromium at {chromium} (apt-get install -y chromium, or set CHROMIUM)")
    env = dict(os.environ, NODE_PATH=_node_path(node))
    probe = subprocess.run([node, "-e", "require.resolve('playwright-core')"], cwd=HERE, env=env,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("the browser test needs the playwright-core npm module: npm install --prefix DIR playwright-core, "
                    "then NODE_PATH=DIR/node_modules (NODE_PATH is "
                    f"{os.environ.get('NODE_PATH') or 'unset'})")
    return {"node": node, "chromium": chromium, "env": env}


def estimate_lines_with_warning() -> list[str]:
    """What I2VGen-XL Conditioning shows at its largest: the estimate with a warning, and the fp8 line."""
    import sys

    sys.path.insert(0, str(REPO))
    from i2vgen_core import memory as M

    lines = []
    for dtype in ("fp16", "fp8"):
        est = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1, weight_dtype=dtype)
        line, warning = M.describe(est, free=6 * M.GIB, device="the GPU (cuda:0)", frames=16, weight_dtype=dtype,
                                   label=f" with {dtype} weights")
        lines += [line] + (["WARNING: " + warning] if warning and dtype == "fp16" else [])
    return lines


def run_browser_script(script: Path, config: dict, work: Path, browser_tools: dict, server,
                       timeout_s: float) -> dict:
    """Run a browser check script (frontend_check.mjs, preview_check.mjs) on `config`; its JSON report, or the
    test fails saying why (timeout, no report, the browser session's own failure with the server log's tail)."""
    (work / "config.json").write_text(json.dumps(config))
    try:
        proc = subprocess.run([browser_tools["node"], str(script), str(work / "config.json")], cwd=HERE,
                              env=browser_tools["env"], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} did not finish within {timeout_s:.0f}s")
    out = Path(config["out"])
    if not out.is_file():
        pytest.fail(f"{script.name} wrote no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(out.read_text())
    if data.get("fatal"):
        pytest.fail(f"the browser session failed: {data['fatal']}\nserver log tail:\n{server.log()[-3000:]}")
    return data


#: The two node renderers of the frontend: the classic canvas and Nodes 2.0 (setting Comfy.VueNodes.Enabled).
MODES = ("canvas", "vue")
SCREENSHOTS = os.environ.get("FRONTEND_SCREENSHOTS")  # a folder to keep the on-node screenshots in


@pytest.fixture(scope="module", params=MODES)
def report(request, comfyui_install, browser_tools, comfy_server, pack_name, tmp_path_factory) -> dict:
    """Run frontend_check.mjs once per node renderer (one browser each) against the server; its JSON report."""
    work = tmp_path_factory.mktemp(f"frontend-{request.param}")
    shots = Path(SCREENSHOTS) if SCREENSHOTS else work / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    config = {"url": comfy_server.client.base, "out": str(work / "report.json"), "chromium": browser_tools["chromium"],
              "mode": request.param, "pack_url": f"/extensions/{pack_name}/", "screenshot_dir": str(shots),
              "on_screen_workflow": str(REPO / "workflows" / "i2vgen_xl_cascade.json"),
              "workflows": [{"name": p.stem, "path": str(p)} for p in UI_WORKFLOWS],
              "snap_cases": [list(c) for c in SNAP_CASES], "timeout_ms": 120_000,
              "estimate_lines": estimate_lines_with_warning(),
              "live_estimate_workflow": str(REPO / "workflows" / "i2vgen_xl_cascade.json")}
    data = run_browser_script(SCRIPT, config, work, browser_tools, comfy_server, BROWSER_TIMEOUT_S)
    if SCREENSHOTS:
        (shots / f"report-{request.param}.json").write_text(json.dumps(data, indent=1))
    others = [f"{c['type']}: {c['text'][:160]} ({c['url']})" for c in data["console"]
              if c["type"] == "error" and not _ours(c)]
    print(f"\n[frontend] ComfyUI frontend {data.get('frontend_version')}, {request.param} renderer: "
          f"{len(data['extensions'])} extensions, "
          f"{len(data['registered_node_types'])} node types; {len(others)} console errors not from this package "
          f"(404s of optional user files, blocked api.comfy.org), {len(data['page_errors'])} page errors")
    for line in others[:8] + [e["message"] for e in data["page_errors"] if not _ours(e)][:4]:
        print(f"[frontend]   {line}")
    return data


def _ours(entry: dict) -> bool:
    """Whether a console message or page error comes from this package's extension."""
    text = " ".join(str(entry.get(k, "")) for k in ("text", "url", "message", "stack"))
    return EXTENSION_FILE in text or EXTENSION_NAME in text or "/extensions/i2vgen" in text


# ------------------------------------------------------------------------------------------------ helpers
def served_frontend_version() -> tuple[int, ...]:
    """The version of the frontend the test server serves: COMFYUI_FRONTEND_ROOT's package (pip --target puts its
    dist-info beside it), else the comfyui-frontend-package installed in COMFYUI_PYTHON."""
    root = os.environ.get("COMFYUI_FRONTEND_ROOT")
    text = ""
    if root:
        infos = sorted(Path(root).parents[1].glob("comfyui_frontend_package-*.dist-info"))
        text = infos[-1].name.split("-")[1].removesuffix(".dist-info") if infos else ""
    elif os.environ.get("COMFYUI_PYTHON"):
        text = subprocess.run([os.environ["COMFYUI_PYTHON"], "-c", "import importlib.metadata as m; "
                               "print(m.version('comfyui-frontend-package'))"], capture_output=True, text=True,
                              timeout=120).stdout.strip()
    return tuple(int(p) for p in text.split(".") if p.isdigit()) or (0,)


def skip_preview_renderer(mode: str) -> None:
    """Skip in Nodes 2.0 of frontends where it was a hidden preview: 1.27.10 (what ComfyUI 0.3.64 pins) lists
    Comfy.VueNodes.Enabled as a hidden setting, never offered in its settings dialog, and its Vue nodes draw only the
    16 widget types of their own registry, no DOM widget at all (ComfyUI's own image and video previews neither), and
    size nodes differently from the canvas. Users of that frontend have the classic canvas, tested too."""
    version = served_frontend_version()
    if mode == "vue" and version < (1, 28):
        pytest.skip(f"Nodes 2.0 of frontend {'.'.join(map(str, version))} is a hidden preview that renders no DOM "
                    "widget; users of it have the classic canvas")


def _same(a, b) -> bool:
    """Equal JSON values; numbers within float round-off (the browser writes 9.0 as 9), bools only to bools."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _ui(name: str) -> dict:
    return json.loads((REPO / "workflows" / f"{name}.json").read_text())


def _api(name: str) -> dict:
    return json.loads((REPO / "workflows" / "api" / f"{name}.api.json").read_text())


def _loaded(report: dict, name: str) -> dict:
    got = report["workflows"].get(name)
    assert got is not None, f"the browser did not load {name}.json"
    assert got["error"] is None, f"{name}.json: {got['error']}"
    return got


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool)


def _normalise_links(inputs: dict) -> dict:
    return {k: [str(v[0]), v[1]] if _is_link(v) else v for k, v in inputs.items()}


def _optional_defaults(object_info: dict, class_type: str) -> dict:
    """{name: default} of a node's optional widget inputs (a combo without a default starts at its first option)."""
    out = {}
    for name, spec in object_info.get(class_type, {}).get("input", {}).get("optional", {}).items():
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if "default" in opts:
            out[name] = opts["default"]
        elif isinstance(spec[0], list) and spec[0]:
            out[name] = spec[0][0]
    return out


def _frontend_only(object_info: dict, node: dict, key: str) -> bool:
    """A value a newer frontend adds to one of ComfyUI's own nodes for itself (LoadVideo's "video-preview"): not an
    input the server declares, so the server ignores it. Never said of the pack's own nodes."""
    if node["class_type"].startswith(NODE_PREFIX):
        return False
    spec = object_info.get(node["class_type"], {}).get("input", {})
    return not any(key in spec.get(part, {}) for part in ("required", "optional", "hidden"))


def _check_added_optionals(where: str, added: dict, defaults: dict) -> None:
    """Values the browser has but the file lacks must be optional inputs newer than the file, at their defaults.

    The frontend fills the widgets a file has no value for with their defaults, and the server does the same for
    inputs an API prompt leaves out, so such a file still means the same graph (regenerate it to spell them out).
    """
    for key, value in added.items():
        assert key in defaults, f"{where}: has {key}={value!r}, which the file does not give and is not optional"
        assert _same(value, defaults[key]), f"{where}: {key}={value!r}, not its default {defaults[key]!r}"


# ------------------------------------------------------------------------------------------------ tests
def test_page_loads_and_our_extension_registers_without_errors(report, comfy_server, pack_name, contract_nodes):
    scripts = [r for r in report["extension_responses"] if r["url"].endswith("/" + EXTENSION_FILE)]
    assert any(f"/extensions/{pack_name}/" in r["url"] for r in scripts), \
        f"the page did not load /extensions/{pack_name}/{EXTENSION_FILE}; it loaded {report['extension_responses']}"
    assert all(r["status"] == 200 for r in scripts), scripts
    listed = [p for p in comfy_server.client.get("/extensions") if p.endswith("/" + EXTENSION_FILE)]
    assert listed, "/extensions does not list js/i2vgen_xl.js"
    count = report["extensions"].count(EXTENSION_NAME)
    assert count == 1, (f"{EXTENSION_NAME} is registered {count} times (served as {listed}); "
                        f"extensions: {report['extensions']}")
    missing = [n for n in contract_nodes if n not in report["registered_node_types"]]
    assert not missing, f"LiteGraph has no node type for {missing}"
    errors = [c for c in report["console"] if c["type"] == "error" and _ours(c)]
    errors += [e for e in report["page_errors"] if _ours(e)]
    assert not errors, "errors from js/i2vgen_xl.js in the browser:\n" + json.dumps(errors, indent=1)[:4000]


def test_unknown_node_is_detected(report):
    """Negative control: the first workflow with one node renamed is seen as missing (so the checks below can fail)."""
    control = report["control"]
    bad = [n for n in control["nodes"] if n["type"] == control["missing_type"]]
    assert bad and not bad[0]["registered"] and bad[0]["has_errors"], bad
    # a dialog in older frontends, a "Missing node: ..." entry in the side panel in newer ones
    told = control["dialogs"] + control.get("mentions", [])
    assert any(MISSING_DIALOG.search(d) and control["missing_type"] in d for d in told), \
        f"no missing-nodes dialog or panel entry for {control['missing_type']}: {told}"


@pytest.mark.parametrize("name", [p.stem for p in UI_WORKFLOWS])
def test_workflow_opens_with_every_node_known(report, name):
    got, ui = _loaded(report, name), _ui(name)
    unknown = [f"{n['id']}:{n['type']}" for n in got["nodes"] if not n["registered"] or n["has_errors"]]
    assert not unknown, f"{name}.json: node types the frontend does not know: {unknown}"
    dialogs = [d for d in got["dialogs"] if MISSING_DIALOG.search(d)]
    assert not dialogs, f"{name}.json opened a dialog: {dialogs}"
    assert len(got["nodes"]) == len(ui["nodes"]), \
        f"{name}.json has {len(ui['nodes'])} nodes, the graph {len(got['nodes'])}"
    # node ids are numbers in older frontends, strings in newer ones
    assert sorted((str(n["id"]), n["type"]) for n in got["nodes"]) == \
        sorted((str(n["id"]), n["type"]) for n in ui["nodes"])
    assert got["draw_error"] is None, f"drawing {name} failed: {got['draw_error']}"


@pytest.mark.parametrize("name", [p.stem for p in UI_WORKFLOWS])
def test_widgets_hold_the_file_values(report, object_info, name):
    got, ui, api = _loaded(report, name), _ui(name), _api(name)
    in_file = {str(n["id"]): n for n in ui["nodes"]}
    ours = 0
    for node in got["nodes"]:
        expected = in_file[str(node["id"])]["widgets_values"]
        where = f"{name}.json node {node['id']} ({node['type']})"
        values = [w["value"] for w in node["widgets"]]
        assert _same(values[:len(expected)], expected), \
            f"{where}: widgets {[(w['name'], w['value']) for w in node['widgets']]}, file {expected}"
        added = {w["name"]: w["value"] for w in node["widgets"][len(expected):]}
        _check_added_optionals(where, added, _optional_defaults(object_info, node["type"]))
        saved = node["widgets_values"] if node["widgets_values"] is not None or values else []  # no widgets: None
        assert _same(saved, values), f"{where}: saves {node['widgets_values']}, widgets {values}"
        literal = {k: v for k, v in api.get(str(node["id"]), {}).get("inputs", {}).items() if not _is_link(v)}
        by_name = {w["name"]: w["value"] for w in node["widgets"]}
        for key, value in literal.items():
            assert key in by_name, f"{where}: no widget named {key!r} (widgets: {list(by_name)})"
            assert _same(by_name[key], value), f"{where}: widget {key} = {by_name[key]!r}, API file says {value!r}"
        if node["type"].startswith(NODE_PREFIX):
            ours += 1
            assert (node["color"], node["bgcolor"]) == (NODE_COLOR, NODE_BGCOLOR), \
                f"{where}: colour {node['color']}/{node['bgcolor']}, the extension sets {NODE_COLOR}/{NODE_BGCOLOR}"
    assert ours >= 3, f"{name}.json has only {ours} I2VGen-XL nodes"


@pytest.mark.parametrize("name", [p.stem for p in UI_WORKFLOWS])
def test_graph_to_prompt_gives_the_api_file(report, object_info, name):
    got, api = _loaded(report, name), _api(name)
    prompt = got["prompt"]
    assert prompt, f"graphToPrompt gave nothing for {name}"
    assert sorted(prompt) == sorted(api), f"{name}: node ids {sorted(prompt)} in the browser, {sorted(api)} in the file"
    for key, node in api.items():
        where = f"{name} node {key}"
        assert prompt[key]["class_type"] == node["class_type"], where
        mine, theirs = _normalise_links(prompt[key]["inputs"]), _normalise_links(node["inputs"])
        added = {k: v for k, v in mine.items() if k not in theirs and not _frontend_only(object_info, node, k)}
        _check_added_optionals(f"{where} ({node['class_type']}) in the browser", added,
                               _optional_defaults(object_info, node["class_type"]))
        mine = {k: v for k, v in mine.items() if k in theirs}
        assert _same(mine, theirs), f"{where} ({node['class_type']}):\n browser {mine}\n file    {theirs}"


def test_latent_upscale_hint_matches_the_python_snap(report):
    from i2vgen_core.sizes import snap_refiner_size

    snap = report["snap"]
    assert "error" not in snap, snap
    for case in snap["cases"]:
        w, h = snap_refiner_size(case["width"], case["height"])
        expected = (f"refiner size {w}x{h}" if (w, h) == (case["width"], case["height"])
                    else f"snapped to {w}x{h} for the refiner")
        assert case["texts"] == [expected], f"{case['width']}x{case['height']}: drew {case['texts']}, " \
                                            f"snap_refiner_size gives {w}x{h}"
    assert snap["texts_when_off"] == [], "the hint is drawn although snap_for_refiner is off"
    for name, got in report["workflows"].items():
        for node in got["nodes"]:
            if node["type"] == "I2VGenXLLatentUpscale":
                values = {w["name"]: w["value"] for w in node["widgets"]}
                if values.get("snap_for_refiner"):
                    w, h = snap_refiner_size(values["width"], values["height"])
                    shown = got["info"].get(str(node["id"]), {}).get("refiner", [])
                    assert any(f"{w}x{h}" in t for t in shown), (name, node["id"], got["info"])


@pytest.mark.parametrize("name", [p.stem for p in UI_WORKFLOWS])
def test_layouts_leave_room_for_what_the_pack_draws(report, name):
    """No two nodes of a shipped workflow overlap, counting the model help a loader grows by when its files are
    missing and the memory estimate (with a warning) Conditioning and Refine Sampler grow by."""
    skip_preview_renderer(report["mode"])
    got = report["layouts"][name]
    for case in ("present", "missing"):
        assert got[case]["overlaps"] == [], (case, got[case]["overlaps"])
    helped = [b for b in got["missing"]["boxes"] if b["type"] in ("I2VGenXLModelLoader", "CLIPLoader",
                                                                   "CLIPVisionLoader", "VAELoader")]
    assert helped and all(b["texts"] > 0 for b in helped), helped


def test_conditioning_shows_its_memory_estimate_before_a_run(report):
    """Opening a workflow draws the estimates under I2VGen-XL Conditioning and the Refine Sampler without running
    anything; they follow the length widget, the size typed on I2VGen-XL Detail Encode (the one-size rule) and the
    refine sampler's context windows."""
    live = report["live_estimate"]
    first = live["loaded"]["lines"]
    assert first and first[0].startswith("Estimated peak memory with "), live
    assert "width=640&height=352&length=16" in live["loaded"]["query"], live
    longer = live["length_48"]
    assert "length=48" in longer["query"] and longer["lines"][0] != first[0], live
    narrower = live["detail_320"]
    assert "width=320&height=352&length=48" in narrower["query"] and narrower["lines"][0] != longer["lines"][0], live

    def sampling(lines):  # "... sampling 12.3 GiB ..." of the first line
        return float(lines[0].split("sampling ")[1].split(" GiB")[0])

    assert sampling(first) < sampling(longer["lines"]) and sampling(narrower["lines"]) < sampling(longer["lines"])

    # the Refine Sampler: the video it will get is followed up the graph (Latent Upscale 1280x720 <- I2VGen-XL
    # Sampler <- Conditioning's length), its model from its loader; context windows bound the frames counted
    refine = [live[k]["refine"] for k in ("loaded", "length_48", "detail_320", "windows_16")]
    assert all(r["lines"] and r["lines"][0].startswith("Estimated peak memory on ") for r in refine), refine
    assert "width=1280&height=720&frames=16" in refine[0]["query"], refine[0]
    assert "frames=48" in refine[1]["query"] and sampling(refine[1]["lines"]) > sampling(refine[0]["lines"]), refine
    assert refine[2]["query"] == refine[1]["query"], refine  # the base size does not change the refined video
    assert "context_frames=16" in refine[3]["query"] and sampling(refine[3]["lines"]) < sampling(refine[2]["lines"])
    assert "unet_name=non_ema_0035000.pth" in refine[0]["query"], refine[0]


def test_on_node_text_is_on_screen(report):
    """In both renderers, every node of the cascade (model files missing) that has on-node text shows it: the panel
    is in the page, visible, inside its node's box, not covered by anything, and says what the extension computed;
    Conditioning's width/height are disabled while image_latent is linked (Nodes 2.0: disabled in the DOM too)."""
    skip_preview_renderer(report["mode"])
    seen = report["on_screen"]
    kinds = {s["type"] for s in seen}
    for needed in ("I2VGenXLModelLoader", "CLIPLoader", "CLIPVisionLoader", "VAELoader", "I2VGenXLConditioning",
                   "I2VGenXLRefineSampler", "I2VGenXLLatentUpscale"):
        assert needed in kinds, f"{report['mode']}: no on-node text on {needed}: {sorted(kinds)}"
    for s in seen:
        where = f"{report['mode']} renderer, node {s['id']} {s['type']}"
        assert s["has_panel"] and s["connected"] and s["visible"], f"{where}: the text is not on screen: {s}"
        assert s["inside"], f"{where}: the text box {s['panel_box']} spills out of the node {s['node_box']}"
        assert s["on_top"], f"{where}: something covers the text at {s['panel_box']}"
        assert not s["clipped"], f"{where}: the node cuts off part of its text: {s['text']!r}"
        assert s["text"] and s["text"].strip(), f"{where}: the text is empty"
        if s["type"] == "I2VGenXLConditioning":
            assert "size from image_latent: 640x352" in s["text"], (where, s["text"])
            assert "Estimated peak memory" in s["text"], (where, s["text"])
            assert s["disabled"]["widgets"] == [True, True], (where, s["disabled"])
            if report["mode"] == "vue":
                assert s["disabled"]["dom"] >= 2, f"{where}: width/height are not disabled on the Vue node: {s}"
        if s["type"] == "I2VGenXLModelLoader":
            assert "huggingface.co/ali-vilab/" in s["text"], (where, s["text"])
        if s["type"] == "I2VGenXLLatentUpscale":
            assert "refiner size 1280x720" in s["text"], (where, s["text"])


def test_templates_are_listed(comfy_server, pack_name):
    """The template browser's sources: GET /workflow_templates and /api/workflow_templates/PACK/NAME.json."""
    templates = comfy_server.client.get("/workflow_templates")
    assert pack_name in templates, f"/workflow_templates has no {pack_name!r}: {templates}"
    names = templates[pack_name]
    assert not [n for n in names if n.endswith(".api")], f"API-format files are listed as templates: {names}"
    assert sorted(names) == [p.stem for p in UI_WORKFLOWS], names
    assert len(names) == 5, names
    for name in names:
        url = f"{comfy_server.client.base}/api/workflow_templates/{pack_name}/{name}.json"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert json.loads(r.read()) == _ui(name), f"{url} does not serve workflows/{name}.json"

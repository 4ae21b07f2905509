"""Static checks of workflows/ (no ComfyUI needed): UI and API formats agree, links are valid, every node class is
ours or a known native one, model files are in the demo-weight set, example inputs exist; plus the headless client's
workflow editing."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from i2vgen_core import sizes
from i2vgen_core.weights.demo import demo_file_names

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
INPUTS = WORKFLOWS / "inputs"

# Output socket types of every class a workflow may use.
OUR_NODES = {
    "I2VGenXLModelLoader": ["MODEL"],
    "I2VGenXLSampler": ["LATENT"],
    "I2VGenXLRefineSampler": ["LATENT"],
    "I2VGenXLSemanticEncode": ["CLIP_VISION_OUTPUT"],
    "I2VGenXLDetailEncode": ["LATENT"],
    "I2VGenXLConditioning": ["CONDITIONING", "CONDITIONING", "LATENT"],
    "I2VGenXLVideoEncode": ["LATENT"],
    "I2VGenXLLatentUpscale": ["LATENT"],
    "I2VGenXLVideoDecode": ["IMAGE", "FLOAT"],
    "I2VGenXLExtend": ["LATENT"],
}
NATIVE_NODES = {
    "CLIPLoader": ["CLIP"],
    "CLIPVisionLoader": ["CLIP_VISION"],
    "VAELoader": ["VAE"],
    "LoadImage": ["IMAGE", "MASK"],
    "CLIPTextEncode": ["CONDITIONING"],
    "CreateVideo": ["VIDEO"],
    "SaveVideo": [],
    "LoadVideo": ["VIDEO"],
    "GetVideoComponents": ["IMAGE", "AUDIO", "FLOAT"],
    "KSampler": ["LATENT"],
    "VAEDecode": ["IMAGE"],
    "PreviewImage": [],
}
KNOWN = {**OUR_NODES, **NATIVE_NODES}
VIRTUAL_UI_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODEL_INPUTS = {  # class -> (input, ComfyUI models folder)
    "I2VGenXLModelLoader": ("unet_name", "diffusion_models"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
    "VAELoader": ("vae_name", "vae"),
}
WIDGET_EXTRAS = {"fixed", "randomize", "increment", "decrement", "image"}

API_FILES = sorted((WORKFLOWS / "api").glob("*.api.json"))
NAMES = [p.name[: -len(".api.json")] for p in API_FILES]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _import_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_the_four_workflows_exist():
    assert {"i2vgen_xl_image_to_video", "i2vgen_xl_cascade", "ms_image2video_cascade", "refine_video",
            "long_video"} <= set(NAMES)
    ui_files = {p.name[:-5] for p in WORKFLOWS.glob("*.json")}
    assert ui_files == set(NAMES), "every workflow needs both NAME.json (UI) and NAME.api.json (API)"


@pytest.mark.parametrize("name", NAMES)
def test_api_format(name):
    api = _load(WORKFLOWS / "api" / f"{name}.api.json")
    assert api and all(isinstance(k, str) and k.isdigit() for k in api)
    for node_id, node in api.items():
        cls = node["class_type"]
        assert cls in KNOWN, f"{name}: node {node_id} uses unknown class {cls}"
        for input_name, value in node["inputs"].items():
            if isinstance(value, list):
                assert len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int), \
                    (node_id, input_name)
                src = api.get(value[0])
                assert src is not None, f"{name}: node {node_id}.{input_name} links to missing node {value[0]}"
                assert 0 <= value[1] < len(KNOWN[src["class_type"]]), (node_id, input_name)
    # every output node is reachable: a SaveVideo exists and the graph has no cycles
    assert any(n["class_type"] == "SaveVideo" for n in api.values())
    seen, stack = set(), set()

    def visit(i: str) -> None:
        assert i not in stack, f"{name}: cycle through node {i}"
        if i in seen:
            return
        stack.add(i)
        for v in api[i]["inputs"].values():
            if isinstance(v, list):
                visit(v[0])
        stack.discard(i)
        seen.add(i)

    for i in api:
        visit(i)


@pytest.mark.parametrize("name", NAMES)
def test_ui_format_matches_api(name):
    ui = _load(WORKFLOWS / f"{name}.json")
    api = _load(WORKFLOWS / "api" / f"{name}.api.json")
    assert ui["version"] == 0.4
    nodes = {n["id"]: n for n in ui["nodes"]}
    real = {i: n for i, n in nodes.items() if n["type"] not in VIRTUAL_UI_NODES}
    assert {str(i) for i in real} == set(api)
    assert ui["last_node_id"] >= max(nodes) and ui["last_link_id"] >= max((l[0] for l in ui["links"]), default=0)
    links = {l[0]: l for l in ui["links"]}
    assert len(links) == len(ui["links"])
    for link_id, (lid, src, src_slot, dst, dst_slot, ltype) in links.items():
        assert src in real and dst in real, link_id
        assert real[src]["outputs"][src_slot]["type"] == ltype
        assert link_id in real[src]["outputs"][src_slot]["links"]
        target_input = real[dst]["inputs"][dst_slot]
        assert target_input["link"] == link_id and target_input["type"] == ltype
        # the same edge in the API format
        assert api[str(dst)]["inputs"][target_input["name"]] == [str(src), src_slot]
    for node_id, node in real.items():
        a = api[str(node_id)]
        assert node["type"] == a["class_type"]
        assert [o["type"] for o in node["outputs"]] == KNOWN[node["type"]]
        api_links = {k for k, v in a["inputs"].items() if isinstance(v, list)}
        ui_links = {i["name"] for i in node["inputs"] if i.get("link") is not None}
        assert api_links == ui_links, (name, node_id)
        literals = [v for k, v in a["inputs"].items() if not isinstance(v, list)]
        widgets = list(node.get("widgets_values", []))
        linked_widgets = sum(1 for i in node["inputs"] if i.get("widget") and i.get("link") is not None)
        extras = Counter(widgets) - Counter(literals)
        missing = Counter(literals) - Counter(widgets)
        assert not missing, f"{name}: node {node_id} API values {dict(missing)} not in the UI widgets"
        unexplained = sum(c for v, c in extras.items() if not (isinstance(v, str) and v in WIDGET_EXTRAS))
        assert unexplained <= linked_widgets, f"{name}: node {node_id} UI widgets {dict(extras)} not in the API"
        if a.get("_meta", {}).get("title") not in (None, a["class_type"]):
            assert node.get("title") == a["_meta"]["title"]


@pytest.mark.parametrize("name", NAMES)
def test_model_files_are_in_the_demo_set(name):
    demo = demo_file_names()
    api = _load(WORKFLOWS / "api" / f"{name}.api.json")
    for node in api.values():
        if node["class_type"] in MODEL_INPUTS:
            key, folder = MODEL_INPUTS[node["class_type"]]
            assert node["inputs"][key] in demo[folder], (name, node["class_type"], node["inputs"][key])
        if node["class_type"] == "CLIPLoader":
            assert node["inputs"]["type"] == "stable_diffusion"


@pytest.mark.parametrize("name", NAMES)
def test_example_inputs_exist(name):
    api = _load(WORKFLOWS / "api" / f"{name}.api.json")
    for node in api.values():
        if node["class_type"] == "LoadImage":
            assert (INPUTS / node["inputs"]["image"]).is_file()
        if node["class_type"] == "LoadVideo":
            assert (INPUTS / node["inputs"]["file"]).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_sizes_fit_the_models(name):
    api = _load(WORKFLOWS / "api" / f"{name}.api.json")
    detail = [n["inputs"] for n in api.values() if n["class_type"] == "I2VGenXLDetailEncode"]
    cond = [n["inputs"] for n in api.values() if n["class_type"] == "I2VGenXLConditioning"]
    for d in detail:
        assert any((c["width"], c["height"]) == (d["width"], d["height"]) for c in cond), name
    for n in api.values():
        inputs = n["inputs"]
        if n["class_type"] in ("I2VGenXLLatentUpscale", "I2VGenXLVideoEncode"):
            assert sizes.snap_refiner_size(inputs["width"], inputs["height"]) == (inputs["width"], inputs["height"])
        for key in ("width", "height"):
            if key in inputs and not isinstance(inputs[key], list):
                assert inputs[key] % 8 == 0


def test_api_files_are_up_to_date_with_the_builder():
    builder = _import_file("_i2vgen_build_workflows", WORKFLOWS / "build_workflows.py")
    for make in builder.GRAPHS:
        graph = make()
        assert _load(WORKFLOWS / "api" / f"{graph.name}.api.json") == builder.to_api(graph), \
            f"{graph.name}.api.json is stale: run python workflows/build_workflows.py"


def test_template_folder_has_only_workflows():
    # ComfyUI lists every workflows/*.json of a custom-node pack in its template browser.
    for p in WORKFLOWS.glob("*.json"):
        data = _load(p)
        assert ("nodes" in data and "links" in data) or all("class_type" in v for v in data.values()), p.name


# ------------------------------------------------------------------------------------------ headless client
@pytest.fixture(scope="module")
def headless():
    return _import_file("_i2vgen_headless_api", ROOT / "workflows" / "headless_api.py")


def test_headless_overrides(headless):
    api = _load(WORKFLOWS / "api" / "i2vgen_xl_cascade.api.json")
    out = headless.apply_overrides(api, image="up/mine.png", text="a red kite", negative="ugly", seed=7,
                                   sets=["10.length=8", "11.sampler_name=euler", "9.width=320"])
    assert out is not api and api != out
    by_title = {n["_meta"]["title"]: n for n in out.values()}
    assert by_title["Prompt"]["inputs"]["text"] == "a red kite"
    assert by_title["Negative prompt"]["inputs"]["text"] == "ugly"
    assert by_title["Refiner prompt"]["inputs"]["text"].startswith("a red kite, cinematic, High Contrast")
    assert by_title["Refiner negative prompt"]["inputs"]["text"] == "ugly"
    assert out["5"]["inputs"]["image"] == "up/mine.png"
    assert out["10"]["inputs"]["length"] == 8 and out["11"]["inputs"]["sampler_name"] == "euler"
    assert out["9"]["inputs"]["width"] == 320
    assert out["11"]["inputs"]["seed"] == 7 and out["16"]["inputs"]["seed"] == 7
    with pytest.raises(headless.ComfyError):
        headless.apply_overrides(api, sets=["999.x=1"])
    with pytest.raises(headless.ComfyError):
        headless.apply_overrides(api, sets=["novalue"])


def test_headless_output_files(headless):
    entry = {"outputs": {"14": {"images": [{"filename": "a.mp4", "subfolder": "video", "type": "output"}],
                                "animated": [True]}}}
    assert headless.output_files(entry) == [{"filename": "a.mp4", "subfolder": "video", "type": "output"}]


def test_headless_rejects_ui_format(headless, tmp_path, capsys):
    assert headless.main([str(WORKFLOWS / "i2vgen_xl_cascade.json"), "--server", "http://127.0.0.1:9"]) == 2


def test_headless_smoke_sizes_stay_valid(headless):
    for path in API_FILES:
        small = headless.smoke_sized(_load(path))
        for node in small.values():
            inputs = node["inputs"]
            if node["class_type"] in headless.SIZED and isinstance(inputs.get("width"), int):
                assert inputs["width"] % 8 == 0 and inputs["height"] % 8 == 0 and inputs["width"] >= 64
                if node["class_type"] in ("I2VGenXLLatentUpscale", "I2VGenXLVideoEncode"):
                    assert inputs["width"] % 64 == 0 and sizes.padded_height_ok(inputs["height"] // 8), inputs
            if node["class_type"] in headless.SAMPLERS:
                assert inputs["steps"] <= 2

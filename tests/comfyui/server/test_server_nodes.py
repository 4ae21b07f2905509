"""The package inside a real ComfyUI server: it imports, and every node of the contract is described properly."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.comfyui


def test_package_imported_without_errors(comfy_server, object_info, pack_name):
    """No import failure for our package in the log, and its nodes are registered."""
    log = comfy_server.log()
    bad = [line for line in log.splitlines()
           if pack_name in line and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert not bad, "our package failed to import:\n" + "\n".join(bad) + "\n" + log[-4000:]
    ours = [name for name, info in object_info.items() if pack_name in str(info.get("python_module", ""))]
    assert "I2VGenXLModelLoader" in ours, f"our nodes are not registered; registered by us: {ours}"


def test_every_contract_node_is_registered(object_info, contract_nodes):
    missing = [name for name in contract_nodes if name not in object_info]
    assert not missing, f"nodes of the contract missing from /object_info: {missing}"


def test_node_has_description_tooltips_and_category(object_info, contract_node):
    node = contract_node
    if node not in object_info:
        pytest.fail(f"{node} is not registered")
    info = object_info[node]
    assert info.get("description", "").strip(), f"{node} has no DESCRIPTION"
    assert info.get("category", "").startswith("I2VGen-XL"), f"{node} category {info.get('category')!r}"
    for section in ("required", "optional"):
        for name, spec in (info["input"].get(section) or {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            assert opts.get("tooltip", "").strip(), f"{node}.{name} ({section}) has no tooltip"
    tips = info.get("output_tooltips") or []
    assert len(tips) == len(info["output"]) and all(t.strip() for t in tips), \
        f"{node} needs one output tooltip per output, got {tips}"


def test_loader_lists_demo_unets(object_info, comfy_server):
    choices = object_info["I2VGenXLModelLoader"]["input"]["required"]["unet_name"][0]
    assert choices, "the loader offers no files although demo weights are in the i2vgen folder"
    spec = object_info["I2VGenXLModelLoader"]["input"]["required"]
    assert spec["weight_dtype"][0] == ["auto", "fp16", "bf16", "fp32", "fp8_e4m3fn", "fp8_e5m2"]
    assert spec["attention"][0] == ["auto", "sdpa", "xformers", "chunked", "bmm", "flex", "sage"]


def test_sampler_defaults_follow_the_papers(object_info):
    base = object_info["I2VGenXLSampler"]["input"]["required"]
    assert base["steps"][1]["default"] == 50 and base["cfg"][1]["default"] == 9.0
    assert base["sampler_name"][1]["default"] == "ddim" and base["scheduler"][1]["default"] == "ddim_uniform"
    refine = object_info["I2VGenXLRefineSampler"]["input"]["required"]
    assert refine["strength"][1]["default"] == 0.6 and refine["steps"][1]["default"] == 30
    assert refine["cfg"][1]["default"] == 7.5 and refine["guidance_rescale"][1]["default"] == 0.2
    assert refine["sampler_name"][1]["default"] == "dpmpp_2m_sde"


def test_frontend_extension_is_served(comfy_server):
    """WEB_DIRECTORY = ./js is registered: /extensions lists our script and serves it."""
    listed = [path for path in comfy_server.client.get("/extensions") if path.endswith("/i2vgen_xl.js")]
    assert listed, "js/i2vgen_xl.js is not listed by /extensions"
    import urllib.request

    with urllib.request.urlopen(comfy_server.client.base + listed[0], timeout=30) as r:
        assert b"registerOnce(" in r.read()  # js/common.js registerOnce -> app.registerExtension

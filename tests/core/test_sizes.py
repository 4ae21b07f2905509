"""The size rules (i2vgen_core/sizes.py): latent sizes per variant, the refiner's pixel sizes, and their one
mirrored copy in js/common.js and the headless client, which must agree with the Python."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from i2vgen_core import sizes, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def test_padded_height_rule_for_other_depths():
    # 3 levels: h = 2 (mod 8); 2 levels: h = 2 (mod 4); 1 level: any even h
    assert [h for h in range(1, 20) if sizes.padded_height_ok(h, 2)] == [2, 6, 10, 14, 18]
    assert [h for h in range(1, 9) if sizes.padded_height_ok(h, 1)] == [2, 4, 6, 8]
    assert sizes.nearest_padded_height(88) == 90 and sizes.nearest_padded_height(94) == 98  # tie -> larger
    assert sizes.nearest_padded_height(0.5) == 2


def test_check_latent_size_suggests_heights_beyond_latent_400():
    config = tiny_config("ms_vid2vid_xl")
    sizes.check_latent_size(config, 90, 160)
    with pytest.raises(ValueError, match=r"nearest height that works is 8016px \(latent 1002\)") as err:
        sizes.check_latent_size(config, 1000, 160)
    assert "720px does" not in str(err.value)
    with pytest.raises(ValueError, match="multiple of 64px"):
        sizes.check_latent_size(config, 90, 20)
    two_levels = tiny_config("ms_vid2vid_xl", block_channels=(32, 64, 64), attention_levels=(True, True, False))
    sizes.check_latent_size(two_levels, 6, 4)  # 48px high works with two padded levels, not with three
    with pytest.raises(ValueError, match=r"nearest height that works is 48px"):
        sizes.check_latent_size(tiny_config("ms_vid2vid_xl", block_channels=(32, 64, 64),
                                            attention_levels=(True, True, False)), 5, 4)
    sizes.check_latent_size(tiny_config("i2vgen_xl"), 5, 7)  # unpadded variants take any positive size
    with pytest.raises(ValueError, match="positive"):
        sizes.check_latent_size(tiny_config("i2vgen_xl"), 0, 7)


def test_refiner_size_ok_is_snap_fixpoint():
    for w in range(64, 1400, 8):
        for h in range(16, 1200, 8):
            assert sizes.refiner_size_ok(w, h) == (w % 64 == 0 and (h // 8) % 8 == 2), (w, h)


def test_pixel_size_error():
    assert sizes.pixel_size_error(1280, 720) is None
    assert "multiple of 8" in sizes.pixel_size_error(1281, 720)
    assert "outside" in sizes.pixel_size_error(32, 720)
    assert sizes.pixel_size_error(32, 16, minimum=16) is None


def test_headless_client_uses_the_same_rule():
    spec = importlib.util.spec_from_file_location("_i2vgen_headless_sizes", ROOT / "workflows" / "headless_api.py")
    headless = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(headless)
    assert headless.sizes.snap_refiner_size(1270, 700) == sizes.snap_refiner_size(1270, 700) == (1280, 720)
    for w, h in [(1280, 720), (1920, 1104), (448, 272), (640, 4000)]:
        small = headless.small_size(w, h)
        assert sizes.refiner_size_ok(*small), (w, h, small)
    # runs as a script (standard library only)
    out = subprocess.run([sys.executable, str(ROOT / "workflows" / "headless_api.py"), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--smoke" in out.stdout


def _js_function(name: str) -> str:
    source = (ROOT / "js" / "common.js").read_text()
    match = re.search(rf"^export function {name}\(.*?^}}\n", source, re.S | re.M)
    assert match, f"{name} not found in js/common.js"
    return match.group(0).removeprefix("export ")


@pytest.mark.skipif(shutil.which("node") is None, reason="node (Node.js) is not installed")
def test_js_snap_mirrors_python():
    cases = [(w, h) for w in list(range(8, 1400, 24)) + [96, 160, 1270.5] for h in range(8, 1300, 4)]
    script = (_js_function("snapForRefiner") + f"const cases = {json.dumps(cases)};\n"
              "console.log(JSON.stringify(cases.map(([w, h]) => snapForRefiner(w, h))));\n")
    out = subprocess.run(["node", "-"], input=script, capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout)
    for (w, h), js in zip(cases, got):
        assert tuple(js) == sizes.snap_refiner_size(w, h), (w, h)

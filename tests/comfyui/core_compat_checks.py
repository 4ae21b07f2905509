"""Checks, on the ComfyUI that is installed (0.3.64 in CI), of what the pack does for newer cores read in
docs/comfyui_compat.md; run inside ComfyUI's Python (no server).

Usage: COMFYUI_PYTHON core_compat_checks.py COMFYUI_PATH REPO DEMO_DIR -> one JSON object per check on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inprocess_checks as base  # noqa: E402  (setup, tiny_patcher, run_checks)

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def model_conds(h: int):
    """The conds I2VGenXLModel.extra_conds makes for an I2VGen-XL run (random values, real shapes)."""
    import torch
    import comfy.conds

    g = torch.Generator().manual_seed(0)
    return {"c_crossattn": comfy.conds.CONDCrossAttn(torch.randn(1, 77, 1024, generator=g)),
            "image_embedding": comfy.conds.CONDRegular(torch.randn(1, 1024, generator=g)),
            "image_latent": comfy.conds.CONDRegular(torch.randn(1, 4, h, h, generator=g)),
            "fps": comfy.conds.CONDRegular(torch.tensor([16]))}


@check
def conds_stay_whole_in_every_context_window():
    """Newer cores ask BaseModel.resize_cond_for_context_window first and otherwise slice a cond whose size on the
    frame axis equals the frame count; 0.3.64 slices by its own rule. Both must leave every cond of the pack's model
    whole, including where the shapes collide (1024 frames = the text's 1024 features; 16 frames = a 16-high image
    latent)."""
    import torch
    import comfy.context_windows as cw
    from i2vgen_pkg.nodes.comfy_model import WHOLE_IN_EVERY_WINDOW

    model = base.tiny_patcher("i2vgen_xl").model
    collisions = {}
    for frames in (16, 1024):
        conds = model_conds(h=16)
        x_in = torch.zeros(1, 4, frames, 2, 2)
        window = cw.IndexListContextWindow(list(range(4)), dim=2)
        collisions[frames] = sorted(k for k, v in conds.items() if v.cond.ndim > 2 and v.cond.size(2) == frames)
        assert set(conds) == set(WHOLE_IN_EVERY_WINDOW), sorted(conds)
        for key, value in conds.items():  # the newer cores' path: the model's hook first
            out = model.resize_cond_for_context_window(key, value, window, x_in, "cpu", retain_index_list=[])
            assert out is not None and torch.equal(out.cond, value.cond), (frames, key)
        handler = cw.IndexListContextHandler(cw.get_matching_context_schedule("standard_static"),
                                             cw.get_matching_fuse_method("pyramid"), context_length=4, dim=2)
        resized = handler.get_resized_cond([{"model_conds": dict(conds)}], x_in, window)[0]["model_conds"]
        for key, value in conds.items():  # the installed core's own rule
            assert torch.equal(resized[key].cond, value.cond), (frames, key)
    assert collisions == {16: ["image_latent"], 1024: ["c_crossattn"]}, collisions
    return {"shape_collisions_by_frames": collisions}


def main() -> int:
    base.DEMO_DIR = sys.argv[3]
    base.setup(sys.argv[1], sys.argv[2])
    base.run_checks(CHECKS, base.selected(sys.argv, 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every real checkpoint layout (names + shapes of the four public UNets) loads with nothing missing or left over."""

import json
from pathlib import Path

import pytest
import torch

from i2vgen_core import export_state_dict, load_unet
from i2vgen_core.weights.layouts import to_ours

SHAPES = json.loads((Path(__file__).parent / "data" / "unet_state_dict_shapes.json").read_text())
EXPECTED = {"i2vgen_xl_diffusers": ("i2vgen_xl", "diffusers"), "i2vgen_xl_vgen": ("i2vgen_xl", "vgen"),
            "ms_image2video_base": ("ms_image2video", "modelscope"), "ms_vid2vid_xl": ("ms_vid2vid_xl", "modelscope")}


def meta_state_dict(name: str, prefix: str = "") -> dict:
    return {prefix + k: torch.empty(s, device="meta") for k, s in SHAPES[name].items()}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_real_layout_loads_completely(name):
    variant, fmt = EXPECTED[name]
    sd = meta_state_dict(name)
    ours, detected = to_ours(sd)
    assert detected == fmt
    unet = load_unet(sd, device="meta")  # load_unet itself fails on any missing / unexpected / mis-shaped tensor
    assert unet.variant == variant
    assert set(unet.state_dict()) == set(ours)
    # the inverse mapping gives back exactly the original names and shapes
    back = export_state_dict(unet, fmt)
    assert {k: list(v.shape) for k, v in back.items()} == SHAPES[name]


@pytest.mark.parametrize("name", ["i2vgen_xl_diffusers", "i2vgen_xl_vgen"])
def test_i2vgen_xl_parameter_count(name):
    unet = load_unet(meta_state_dict(name), device="meta")
    assert sum(p.numel() for p in unet.parameters()) == 1_420_469_224
    c = unet.config
    assert (c.model_channels, c.block_channels, c.head_dim, c.context_dim, c.num_image_tokens) == \
        (320, (320, 640, 1280, 1280), 64, 1024, 4)


@pytest.mark.parametrize("prefix", ["model.diffusion_model.", "module."])
def test_prefixed_real_layout(prefix):
    assert load_unet(meta_state_dict("i2vgen_xl_vgen", prefix), device="meta").variant == "i2vgen_xl"


def test_vid2vid_is_padded_variant():
    unet = load_unet(meta_state_dict("ms_vid2vid_xl"), device="meta")
    assert unet.config.vid2vid_pad and not unet.config.use_fps and not unet.config.use_image_embedding

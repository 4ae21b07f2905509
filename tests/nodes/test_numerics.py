"""The ComfyUI fixes (nodes/numerics.py) complete the core's NaN/inf message as users see it."""

import pytest
import torch

from helpers import pack_module

numerics = pack_module("numerics")


def nan_and_inf() -> torch.Tensor:
    """512 values, one NaN and one inf."""
    x = torch.zeros(1, 4, 2, 8, 8)
    x[0, 0, 0, 0, 0] = float("nan")
    x[0, 1, 1, 2, 3] = float("inf")
    return x


@pytest.mark.parametrize("stage,advice", [
    ("sampling", "the model overflowed in half precision. Load the model with weight_dtype bf16 (or fp32) in "
                 "I2VGen-XL Model Loader, or start ComfyUI with --bf16-unet / --force-fp32"),
    ("decode", "the VAE overflowed in fp16. Run the VAE in bf16 or fp32 (start ComfyUI with --bf16-vae or "
               "--fp32-vae, or load the VAE with a fp32 dtype), or decode with tile on"),
])
def test_each_stage_gets_its_comfyui_fix(stage, advice):
    numerics.check_output(torch.ones(3), stage)
    with pytest.raises(ValueError) as err:
        numerics.check_output(nan_and_inf(), stage)
    assert str(err.value) == (f"I2VGen-XL: the {stage} produced 2 non-finite values (1 NaN, 1 inf) of 512; saving "
                              f"them would give a black video. Most likely {advice}.")

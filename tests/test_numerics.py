"""check_finite: NaN/inf are caught with the stage and the fix; finite tensors pass."""

import pytest
import torch

from i2vgen_core.numerics import check_finite


def test_finite_passes():
    check_finite(torch.randn(2, 4, 3, 8, 8), "sampling")
    check_finite(torch.arange(4), "decode")  # integer tensors are never non-finite


@pytest.mark.parametrize("stage,fix", [("sampling", "bf16"), ("decode", "--fp32-vae")])
def test_nan_and_inf_are_reported_with_the_fix(stage, fix):
    x = torch.zeros(1, 4, 2, 8, 8, dtype=torch.float16)
    x[0, 0, 0, 0, 0] = float("nan")
    x[0, 1, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError) as err:
        check_finite(x, stage)
    msg = str(err.value)
    assert stage in msg and "2 non-finite" in msg and "1 NaN, 1 inf" in msg and fix in msg and "black" in msg

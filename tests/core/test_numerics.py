"""check_finite: NaN/inf are caught with the stage and the caller's fix; finite tensors pass."""

import pytest
import torch

from i2vgen_core.numerics import DEFAULT_FIX, check_finite


def nan_and_inf(dtype=torch.float16) -> torch.Tensor:
    """512 values, one NaN and one inf."""
    x = torch.zeros(1, 4, 2, 8, 8, dtype=dtype)
    x[0, 0, 0, 0, 0] = float("nan")
    x[0, 1, 1, 2, 3] = float("inf")
    return x


def test_finite_passes():
    check_finite(torch.randn(2, 4, 3, 8, 8), "sampling")
    check_finite(torch.arange(4), "decode")  # integer tensors are never non-finite


@pytest.mark.parametrize("fix", [None, "the caller's own advice"])
def test_nan_and_inf_are_reported_with_the_fix(fix):
    with pytest.raises(ValueError) as err:
        check_finite(nan_and_inf(), "stage x", *([fix] if fix else []))
    assert str(err.value) == (f"I2VGen-XL: the stage x produced 2 non-finite values (1 NaN, 1 inf) of 512; saving "
                              f"them would give a black video. Most likely {fix or DEFAULT_FIX}.")

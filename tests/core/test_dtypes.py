"""i2vgen_core.dtypes, the one table of dtype names: torch-free, in agreement with torch and safetensors, and the
spellings each user accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from i2vgen_core import dtypes

ROOT = Path(__file__).resolve().parents[2]


def test_importing_it_never_imports_torch():
    code = ("import sys; from i2vgen_core import dtypes; dtypes.dtype_bytes('fp16'); dtypes.dtype_name('x'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", list(dtypes.TORCH_NAMES) + list(dtypes.ALIASES))
def test_names_and_aliases_agree_with_torch(name):
    dtype = dtypes.torch_dtype(name)
    assert isinstance(dtype, torch.dtype) and dtype.is_floating_point
    assert dtypes.dtype_name(dtype) == dtypes.canonical(name)
    if name in dtypes.BYTES:
        assert dtypes.dtype_bytes(name) == dtype.itemsize == dtypes.dtype_bytes(dtype)


def test_every_size_name_is_a_dtype_or_the_fp8_family():
    for name, size in dtypes.BYTES.items():
        if name == "fp8":
            assert all(dtypes.BYTES[n] == size for n in dtypes.FP8)
        else:
            assert dtypes.torch_dtype(name).itemsize == size
    assert set(dtypes.WEIGHT_NAMES) <= set(dtypes.BYTES) and set(dtypes.CAST_NAMES) <= set(dtypes.WEIGHT_NAMES)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dtype 'fp12'"):
        dtypes.torch_dtype("fp12")
    with pytest.raises(ValueError, match="unknown dtype 'fp64'; expected one of fp32, float32, fp16"):
        dtypes.dtype_bytes("fp64")  # nothing runs in fp64: the memory estimate has no size for it
    assert dtypes.dtype_name(torch.int8) is None and dtypes.dtype_name(None, "x") == "x"
    assert dtypes.dtype_name(torch.complex64, str(torch.complex64)) == "torch.complex64"


@pytest.mark.parametrize("code", list(dtypes.SAFETENSORS_NAMES))
def test_safetensors_codes_are_what_safetensors_writes(code, tmp_path):
    from safetensors.torch import save_file

    name = dtypes.SAFETENSORS_NAMES[code]
    path = tmp_path / "t.safetensors"
    save_file({"t": torch.zeros(3, dtype=dtypes.torch_dtype(name))}, str(path))
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["t"]["dtype"] == code == dtypes.safetensors_code(name) == dtypes.safetensors_code(
        dtypes.torch_dtype(name))
    assert dtypes.SAFETENSORS_BYTES[code] == dtypes.torch_dtype(name).itemsize

"""The floating-point dtypes the pack names: their names and accepted spellings, bytes per element, safetensors
codes, and the torch dtype of each name. Torch-free: torch is imported only when a torch dtype is asked for, so the
memory estimate, the command line's help and the checkpoint header reader can use these tables without it.

Every table of the package that turns a name into a dtype or a size (the conversion and encoder-file commands, the
demo weights, the memory estimate, the loader node, the benchmarks) reads it from here.
"""

from __future__ import annotations

#: The pack's name of each floating-point dtype -> torch's attribute for it. fp64 only occurs in files (a header
#: may say F64); nothing runs in it.
TORCH_NAMES = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16",
               "fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}
#: torch's own spellings, accepted wherever a name is.
ALIASES = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
#: The two fp8 formats; "fp8" names either where only the size matters (the memory estimate, the nodes' UI).
FP8 = ("fp8_e4m3fn", "fp8_e5m2")
#: What weights are cast to by the conversion commands: the plain precisions (no fp8: it needs a compute dtype).
CAST_NAMES = ("fp16", "bf16", "fp32")
#: What a UNet's weights may be stored in, widest first.
WEIGHT_NAMES = ("fp32", "fp16", "bf16") + FP8
#: Bytes per element of every name and alias a run's weights or activations can be given in, widest first (the
#: order messages list them in).
BYTES = {"fp32": 4, "float32": 4, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3fn": 1,
         "fp8_e5m2": 1}

#: Bytes per element of every safetensors dtype code torch can hold (a header with another code is refused).
SAFETENSORS_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                     "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: The pack's name of each floating-point safetensors code.
SAFETENSORS_NAMES = {"F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16", "F8_E4M3": "fp8_e4m3fn",
                     "F8_E5M2": "fp8_e5m2"}

_BY_TORCH = {attr: name for name, attr in TORCH_NAMES.items()}
_CODES = {name: code for code, name in SAFETENSORS_NAMES.items()}


def canonical(name: str) -> str:
    """The pack's name for a name or alias ("float16" -> "fp16"); ValueError for one it does not know."""
    name = ALIASES.get(name, name)
    if name not in TORCH_NAMES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join([*TORCH_NAMES, *ALIASES])}")
    return name


def torch_dtype(name: str):
    """The torch dtype of a name or alias ("fp16", "bfloat16", "fp8_e4m3fn", ...); imports torch."""
    import torch

    return getattr(torch, TORCH_NAMES[canonical(name)])


def dtype_name(dtype, default: str | None = None) -> str | None:
    """The pack's name of a torch dtype (torch.float16 -> "fp16"), or `default` for anything else. Needs no torch:
    a torch dtype prints as ``torch.<attribute>``."""
    text = str(dtype)
    return _BY_TORCH.get(text[len("torch."):], default) if text.startswith("torch.") else default


def safetensors_code(dtype) -> str:
    """The safetensors code of a name, alias or torch dtype ("fp16" or torch.float16 -> "F16")."""
    name = dtype_name(dtype) if not isinstance(dtype, str) else canonical(dtype)
    if name not in _CODES:
        raise ValueError(f"{dtype} has no safetensors code")
    return _CODES[name]


def dtype_bytes(dtype) -> int:
    """Bytes per element of a dtype given as torch.dtype or a name ("fp16", "bf16", "fp8_e4m3fn", ...)."""
    if hasattr(dtype, "itemsize"):  # a torch.dtype (never imported here: the estimate is torch-free)
        return dtype.itemsize
    if dtype not in BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(BYTES)}")
    return BYTES[dtype]

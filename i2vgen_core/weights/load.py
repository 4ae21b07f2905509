"""`load_unet`: any supported checkpoint (file, diffusers folder or state dict) to a ready `I2VGenUNet`."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch

from .layouts import infer_config, to_ours
from .read import CheckpointError, read_state_dict, unwrap
from ..config import UNetConfig
from ..dtypes import FP8 as FP8_NAMES, TORCH_NAMES
from .read import PICK_UNET, check_config_json, check_dtypes, check_finite
from ..network.ops import cast_ops
from ..network.unet import I2VGenUNet, build_unet
from ..speed.levers import SpeedLevers, apply_levers

Source = str | os.PathLike | Mapping[str, torch.Tensor]


def source_label(source: Source) -> str:
    """How errors name a source: the file or folder name, or 'the state dict'."""
    return "the state dict" if isinstance(source, Mapping) else (Path(source).name or str(source))


@contextmanager
def untrusted(label: str) -> Iterator[None]:
    """Turn any failure of interpreting a file's tensors/config into a CheckpointError naming it and what to do."""
    try:
        yield
    except CheckpointError as err:
        raise CheckpointError(f"{label}: {err}. If this is not the UNet, {PICK_UNET}; if it is, download it "
                              f"again") from None
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, AttributeError, RuntimeError) as err:
        raise CheckpointError(f"{label}: its tensors or configuration do not form a family UNet "
                              f"({type(err).__name__}: {str(err)[:200]}); {PICK_UNET}, or download it again if it "
                              f"is one") from None


def load_state_dict_any(source: Source) -> tuple[dict[str, torch.Tensor], UNetConfig, str]:
    """Read `source` and return (our-named state dict, inferred config, source format)."""
    hints = None
    if isinstance(source, Mapping):
        raw = unwrap(source, "the state dict")
    else:
        raw, hints = read_state_dict(source)
    label = source_label(source)
    with untrusted(label):
        sd, fmt = to_ours(raw)
        config = infer_config(sd, hints)
    check_config_json(hints, config, label)
    check_finite(raw, label)
    return sd, config, fmt


#: The fp8 storage dtypes this torch has.
FP8 = tuple(getattr(torch, TORCH_NAMES[n]) for n in FP8_NAMES if hasattr(torch, TORCH_NAMES[n]))


def load_unet(source: Source, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
              attention: str = "auto", config: UNetConfig | None = None, ops=None,
              compute_dtype: torch.dtype | None = None, channels_last: bool = False,
              fused_projections: bool = True, fused_kernels: bool = False, fp8_compute: str | None = None,
              cuda_graphs: bool = False, network: type[I2VGenUNet] = I2VGenUNet) -> I2VGenUNet:
    """Load an I2VGen-XL / MS-Image2Video / MS-Vid2Vid-XL UNet; format and variant are detected from the keys.

    `dtype` is the storage dtype (fp8 storage computes in `compute_dtype`, default fp16, through per-layer casts);
    `ops` lets a host (ComfyUI) supply its own layer classes and `network` its subclass of `I2VGenUNet`. The speed
    levers `attention` ... `cuda_graphs` are those of `speed.levers.SpeedLevers`, applied by `apply_levers`:
    `fused_kernels` (fused GroupNorm+SiLU / GEGLU passes), `fp8_compute` ("tensor" / "row": fp8 GEMMs in the
    transformers, changes the numbers), `cuda_graphs` (replay each step as a CUDA graph).
    """
    sd, inferred, fmt = load_state_dict_any(source)
    label = source_label(source)
    config = config or inferred
    if dtype in FP8 and ops is None:
        ops = cast_ops
        compute_dtype = compute_dtype or torch.float16
    with untrusted(label):
        unet = build_unet(config, device="meta", ops=ops, network=network)
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        lines = [f"the {fmt}-format checkpoint does not fit the {config.variant} network it looks like:"]
        if missing:
            lines.append(f"  {len(missing)} tensors missing, e.g. {', '.join(missing[:4])}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected tensors, e.g. {', '.join(unexpected[:4])}")
        if wrong:
            k = wrong[0]
            lines.append(f"  {len(wrong)} tensors with other shapes, e.g. {k}: file {list(sd[k].shape)} vs "
                         f"network {list(expected[k].shape)}")
        lines.append("The file may be truncated, a different model, or a variant this package does not know: "
                     f"{PICK_UNET}, or download it again.")
        raise CheckpointError(f"{label}: " + "\n".join(lines))
    check_dtypes(sd, expected, label)
    if dtype is None:
        floats = [v.dtype for v in sd.values() if v.is_floating_point()]
        dtype = max(set(floats), key=floats.count) if floats else torch.float32
    target = torch.device(device) if device is not None else torch.device("cpu")
    sd = {k: v.to(device=target, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in sd.items()}
    unet.load_state_dict(sd, strict=True, assign=True)
    unet.eval().requires_grad_(False)
    unet.compute_dtype = compute_dtype
    apply_levers(unet, SpeedLevers(attention=attention, fused_projections=fused_projections,
                                   channels_last=channels_last, fused_kernels=fused_kernels, fp8_compute=fp8_compute,
                                   cuda_graphs=cuda_graphs))
    return unet

"""The one place speed levers are switched on a built `I2VGenUNet`.

The network's layers compute the plain function; each lever here changes how, from outside: flags and classes of
live layers, weight layouts, per-step replay, compilation. Every lever but fp8 compute keeps the numbers (fp8 rounds
the transformers' matrix-multiply operands). `apply_levers` applies a `SpeedLevers` in the order the levers need
(layouts before compilation, which bakes them in); the loaders (`load_unet`, the ComfyUI loader node) and the
benchmarks go through it, tests and ablations may flip single levers with the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..network.layers import Attention, ResBlock, SpatialTransformer, TemporalTransformer
from .fused import FUSED, PLAIN


@dataclass(frozen=True)
class SpeedLevers:
    """The levers of one model, as the loaders take them.

    `attention`: a backend of `network.attention.BACKENDS`; `fused_projections`: q/k/v (or k/v) as one GEMM;
    `channels_last`: NHWC trunk and conv weights; `fused_kernels`: GroupNorm(+SiLU) and GEGLU as fused passes;
    `fp8_compute`: "tensor" / "row" scaled fp8 GEMMs in the transformers (changes the numbers) or None;
    `cuda_graphs`: replay each CUDA step as a captured graph; `compile`: regional torch.compile of the blocks.
    """

    attention: str = "auto"
    fused_projections: bool = True
    channels_last: bool = False
    fused_kernels: bool = False
    fp8_compute: str | None = None
    cuda_graphs: bool = False
    compile: bool = False


def apply_levers(unet: nn.Module, levers: SpeedLevers, device: torch.device | str | None = None) -> str:
    """Set every lever of `levers` on `unet` (off where it says off; compilation, once done, stays); returns the
    attention backend in use. `device` is where the model will run (default: where its weights are now), checked
    for backends that need CUDA. Compilation comes last: compiled blocks bake in the weights' layout and the
    layers' classes (a swap afterwards would only recompile them)."""
    backend = unet.set_attention_backend(levers.attention, device)
    set_fused_projections(unet, levers.fused_projections)
    set_channels_last(unet, levers.channels_last)
    set_fused_kernels(unet, levers.fused_kernels)
    set_fp8_compute(unet, levers.fp8_compute)
    set_cuda_graphs(unet, levers.cuda_graphs)
    if levers.compile:
        compile_blocks(unet)
    return backend


def set_fused_projections(unet: nn.Module, enabled: bool = True) -> None:
    """Run q/k/v (or k/v) projections as one GEMM; weights and their names stay separate (LoRA keeps working)."""
    for module in unet.modules():
        if isinstance(module, Attention):
            module.fused = enabled


def set_fused_kernels(unet: nn.Module, enabled: bool = True) -> None:
    """GroupNorm(+SiLU) of resnets and temporal layers and GEGLU as fused passes (`kernels`: Triton on CUDA when
    installed, else a torch fallback) by swapping those layers' classes to `fused`'s (parameters, state-dict keys
    and isinstance unchanged); off swaps them back. Same function as the plain layers. Subclasses of the layers
    (a host's own) are left alone: their forward is theirs."""
    swap = FUSED if enabled else PLAIN
    for module in unet.modules():
        cls = swap.get(type(module))
        if cls is not None:
            module.__class__ = cls


def set_channels_last(unet: nn.Module, enabled: bool = True) -> None:
    """Keep trunk activations and conv weights NHWC (tensor-core friendly; spatial tokens become free views); the
    temporal layers write their sums in the layout they are given, the temporal Conv3d weights become NDHWC.

    Call it before `compile_blocks`: compiled blocks bake in the weights' layout."""
    if enabled != unet.channels_last and any(getattr(m, "_compiled_call_impl", None) is not None
                                             for m in unet.modules()):
        raise ValueError("set_channels_last must come before compile_blocks (compiled blocks fix the layout)")
    unet.channels_last = enabled
    for module in unet.modules():
        if isinstance(module, nn.Conv2d) and module.weight.device.type != "meta":
            module.weight.data = module.weight.data.contiguous(
                memory_format=torch.channels_last if enabled else torch.contiguous_format)
        if isinstance(module, nn.Conv3d) and module.weight.device.type != "meta":  # temporal convs: NDHWC
            module.weight.data = module.weight.data.contiguous(
                memory_format=torch.channels_last_3d if enabled else torch.contiguous_format)


def set_fp8_compute(unet: nn.Module, scaling: str | None = "tensor", emulate: bool = False) -> int:
    """"Fast fp8": the transformers' linear layers compute with fp8 operands ("tensor" or "row" scales; None = off)
    through torch._scaled_mm on GPUs with fp8 tensor cores, emulated elsewhere; returns how many layers changed.
    Changes the numbers (bench/gpu.py --suite measures the error against bf16). q/k/v then run as separate
    projections (the fused projection reads the weights directly)."""
    from .fp8 import enable_fp8_compute  # noqa: PLC0415

    return sum(enable_fp8_compute(m, scaling, emulate) for m in unet.modules()
               if isinstance(m, (SpatialTransformer, TemporalTransformer)))


def set_cuda_graphs(unet: nn.Module, enabled: bool = True) -> None:
    """Replay each CUDA step as a captured CUDA graph (one per input shape); no effect on the CPU.

    Inputs must keep their shapes from step to step (they do in a sampling run); weights must not change while
    enabled (LoRA patching: switch it off first)."""
    from .cuda_graphs import GraphCache  # noqa: PLC0415

    unet.cuda_graphs = GraphCache(unet._predict) if enabled else None


def compile_blocks(unet: nn.Module, **options) -> int:
    """torch.compile every resnet / transformer block in place (regional compilation; `options` go to
    torch.compile); returns how many.

    Blocks of one class share compiled code per input shape, so the network needs more recompilations than
    torch's default cap of 8 per function; the cap is raised (process-wide) to cover them."""
    import torch._dynamo  # noqa: PLC0415

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    count = 0
    for module in unet.modules():
        if isinstance(module, (ResBlock, SpatialTransformer, TemporalTransformer)):
            module.compile(**options)
            count += 1
    return count

"""Where one full-size I2VGen-XL CFG step spends its GPU time (CUDA): top kernels and a breakdown by kind.

    python bench/profile_gpu.py [--dtype fp16|bf16] [--frames 16] [--rows 30]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]  # bench/, repo
from common import make_inputs, random_ours  # noqa: E402

from i2vgen_core.config import variant_config  # noqa: E402
from i2vgen_core.dtypes import torch_dtype  # noqa: E402

KINDS = [("attention", ("flash", "fmha", "attention", "sdpa", "cudnn_generated_fort_native_sdpa")),
         ("gemm", ("gemm", "cutlass", "sm90_xmma", "nvjet", "cublas")),
         ("conv", ("conv", "implicit", "winograd", "xmma_fprop", "cudnn")),
         ("norm", ("group_norm", "layer_norm", "GroupNorm", "LayerNorm", "welford", "norm")),
         ("copy/layout", ("copy", "transpose", "permute", "cat", "contiguous", "Memcpy")),
         ("elementwise", ("elementwise", "vectorized", "silu", "gelu", "add", "mul"))]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k.lower() in low for k in keys):
            return kind
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()
    dtype = torch_dtype(args.dtype)
    config = variant_config("i2vgen_xl")
    unet = random_ours(config, dtype=dtype, device="cuda")
    kw, _, x, t = make_inputs(config, 2, args.frames, 88, 160, dtype=dtype, device="cuda")
    with torch.inference_mode():
        for _ in range(2):
            unet(x, t, **kw)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            unet(x, t, **kw)
            torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.device_time for e in events) or 1.0
    by_kind, by_name = defaultdict(float), defaultdict(float)
    for e in events:
        by_kind[kind_of(e.name)] += e.device_time
        by_name[e.name] += e.device_time
    print(f"GPU time of one CFG step: {total / 1e3:.1f} ms ({len(events)} kernels)")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:12s} {us / 1e3:8.1f} ms  {us / total:6.1%}")
    print("top kernels:")
    for name, us in sorted(by_name.items(), key=lambda kv: -kv[1])[: args.rows]:
        print(f"  {us / 1e3:8.1f} ms {us / total:6.1%}  {name[:120]}")


if __name__ == "__main__":
    main()

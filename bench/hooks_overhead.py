"""CPU cost of the hook points (i2vgen_core.network.hooks): one UNet forward with hooks=None, with an empty ForwardHooks, and
with an injected attention function (the ComfyUI path's shape: every attention through a host function), against
the network of another checkout (before the hooks existed), interleaved.

    python bench/hooks_overhead.py [--baseline PATH_TO_OTHER_CHECKOUT] [--repeats 7]

Prints medians (ms) and ratios; outputs are compared too (hooks=None must equal the baseline bit for bit).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def import_core(root: Path, name: str):
    """Import the i2vgen_core package of a checkout under another module name."""
    spec = importlib.util.spec_from_file_location(name, root / "i2vgen_core" / "__init__.py",
                                                  submodule_search_locations=[str(root / "i2vgen_core")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def sdpa(q, k, v, heads, call):
    b, n, _ = q.shape
    q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout (e.g. a worktree of main~)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--channels", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    sys.path.insert(0, str(REPO))
    import i2vgen_core as core
    from i2vgen_core.network.hooks import ForwardHooks

    sys.path.insert(0, str(REPO / "bench"))
    from common import medium_config

    config = medium_config(args.channels)
    torch.manual_seed(0)
    unet = core.build_unet(config).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 32, 32, generator=g)
    kw = dict(text=torch.randn(2, 77, 1024, generator=g), image_embedding=torch.randn(2, 1024, generator=g),
              image_latent=torch.randn(2, 4, 32, 32, generator=g), fps=torch.tensor([16, 16]))
    t = torch.tensor([500, 500])
    runs = {"hooks=None": lambda: unet(x, t, **kw),
            "empty ForwardHooks": lambda: unet(x, t, hooks=ForwardHooks(), **kw),
            "injected attention": lambda: unet(x, t, hooks=ForwardHooks(attention=sdpa), **kw)}
    outputs = {}
    if args.baseline is not None:
        old = import_core(args.baseline, "baseline_core")
        old_config = old.variant_config("i2vgen_xl", model_channels=args.channels, head_dim=64, context_dim=1024,
                                        image_embedding_dim=1024)
        old_unet = old.build_unet(old_config).eval()
        old_unet.load_state_dict(unet.state_dict())
        old_unet.requires_grad_(False)
        runs = {"baseline (no hooks in the code)": lambda: old_unet(x, t, **kw), **runs}
    times = {name: [] for name in runs}
    with torch.no_grad():
        for name, fn in runs.items():
            outputs[name] = fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    first = next(iter(runs))
    base = statistics.median(times[first])
    print(f"UNet forward, i2vgen_xl layout with {args.channels} base channels, batch 2, 8 frames, 32x32 latent, "
          f"fp32, 2 threads, median of {args.repeats} interleaved runs")
    for name in runs:
        med = statistics.median(times[name])
        diff = (outputs[name] - outputs[first]).abs().max().item()
        print(f"  {name:34s} {med * 1000:8.1f} ms  ratio {med / base:.3f}  max|diff| vs {first}: {diff:.2e}")


if __name__ == "__main__":
    main()

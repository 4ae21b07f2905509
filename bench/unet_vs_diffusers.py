"""CPU benchmark: our UNet vs diffusers' I2VGenXLUNet on one medium configuration, same weights, interleaved.

    python bench/unet_vs_diffusers.py [--channels 64] [--frames 8] [--size 32] [--repeats 5]

Prints the median forward time of each and the ratio ours/diffusers (below 1.0 means ours is faster).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]  # bench/, repo
from common import build_pair, interleaved_median, make_inputs, medium_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64, help="model_channels (the real model has 320)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--batch", type=int, default=2, help="2 = one classifier-free-guidance step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = medium_config(args.channels)
    ref, ours = build_pair(config)
    ours_kw, theirs_kw, x, t = make_inputs(config, args.batch, args.frames, args.size, args.size)
    params = sum(p.numel() for p in ours.parameters())
    with torch.inference_mode():
        diff = (ref(x, t, **theirs_kw).sample - ours(x, t, **ours_kw)).abs().max().item()
        med = interleaved_median({"diffusers": lambda: ref(x, t, **theirs_kw),
                                  "ours": lambda: ours(x, t, **ours_kw)}, args.repeats)
    print(f"config: model_channels={args.channels} ({params / 1e6:.1f} M params), batch {args.batch}, "
          f"{args.frames} frames, latent {args.size}x{args.size}, {torch.get_num_threads()} threads, fp32 CPU")
    print(f"max |ours - diffusers| = {diff:.2e}")
    print(f"diffusers: {med['diffusers'] * 1e3:9.1f} ms   ours: {med['ours'] * 1e3:9.1f} ms")
    print(f"ratio ours/diffusers: {med['ours'] / med['diffusers']:.3f}")


if __name__ == "__main__":
    main()

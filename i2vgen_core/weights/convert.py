"""`python -m i2vgen_core convert IN OUT.safetensors [--dtype fp16|bf16|fp32]
[--format ours|diffusers|vgen|modelscope]`: a UNet checkpoint of any supported layout as safetensors.

Reads any supported UNet checkpoint (pickles only through torch.load(weights_only=True)) and writes safetensors with
the detected configuration embedded in the file's metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..dtypes import CAST_NAMES, torch_dtype
from .layouts import export_state_dict
from .read import CheckpointError
from .load import load_unet


def convert(src: str | Path, dst: str | Path, *, dtype: str | None = None, fmt: str = "ours") -> dict:
    """Convert `src` to safetensors at `dst`; returns a small summary (variant, tensors, parameters, dtype)."""
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"the output must end in .safetensors, got {dst.name}")
    unet = load_unet(src, dtype=torch_dtype(dtype) if dtype else None)
    sd = {k: v.contiguous() for k, v in export_state_dict(unet, fmt).items()}
    meta = {"format": "pt", "i2vgen_variant": unet.variant}
    if fmt == "ours":
        meta["i2vgen_config"] = json.dumps(unet.config.to_dict())
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(dst), metadata=meta)
    return {"variant": unet.variant, "tensors": len(sd), "parameters": sum(v.numel() for v in sd.values()),
            "dtype": str(unet.dtype).replace("torch.", "")}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m i2vgen_core convert",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="checkpoint file (.pth/.ckpt/.bin/.safetensors) or diffusers unet folder")
    parser.add_argument("dst", help="output .safetensors file")
    parser.add_argument("--dtype", choices=sorted(CAST_NAMES), default=None, help="cast weights (default: keep)")
    parser.add_argument("--format", dest="fmt", choices=["ours", "diffusers", "vgen", "modelscope"], default="ours",
                        help="key names to write (default: ours, loadable by this package with its config embedded)")
    args = parser.parse_args(argv)
    try:
        info = convert(args.src, args.dst, dtype=args.dtype, fmt=args.fmt)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {info['variant']}, {info['tensors']} tensors, {info['parameters']:,} parameters, "
          f"{info['dtype']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

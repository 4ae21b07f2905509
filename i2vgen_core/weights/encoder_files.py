"""`python -m i2vgen_core split-encoders SRC OUT_DIR [--dtype fp16|bf16|fp32]`: the encoder and VAE weights of the
original releases as files ComfyUI's native loaders take.

* ``open_clip_pytorch_model.bin`` (VGen, MS-Image2Video, MS-Vid2Vid-XL; the open_clip ViT-H/14 state dict) loads as
  it is in both ``CLIPLoader`` (type *stable_diffusion*) and ``CLIPVisionLoader``, but each of them reads the whole
  3.9 GB file. Split, it becomes ``<stem>.text.safetensors`` (open_clip text-tower names, for
  ``models/text_encoders/``) and ``<stem>.vision.safetensors`` (``visual.*`` names, for ``models/clip_vision/``).
* ``v2-1_512-ema-pruned.ckpt`` (SD2.1, the releases' VAE source) is refused by ``VAELoader`` (its keys carry the
  ``first_stage_model.`` prefix); extracted, ``<stem>.vae.safetensors`` (bare ldm names) loads in ``VAELoader``.

Pickles are only read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping

import torch

from ..dtypes import CAST_NAMES, torch_dtype
from .read import CheckpointError, read_state_dict

OPEN_CLIP_TEXT_KEY = "transformer.resblocks.0.ln_1.weight"
OPEN_CLIP_VISION_KEY = "visual.transformer.resblocks.0.attn.in_proj_weight"
SD_VAE_PREFIX = "first_stage_model."
#: open_clip entries that belong to neither tower's encoder (the contrastive temperature / bias).
_OPEN_CLIP_SHARED = ("logit_scale", "logit_bias")


def split_open_clip(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(text tower, vision tower) of an open_clip CLIP state dict, keeping open_clip's names."""
    if OPEN_CLIP_TEXT_KEY not in sd or OPEN_CLIP_VISION_KEY not in sd:
        raise CheckpointError("not an open_clip CLIP state dict: expected both 'transformer.resblocks.*' (text) and "
                              "'visual.transformer.resblocks.*' (vision) tensors, as in open_clip_pytorch_model.bin")
    text = {k: v for k, v in sd.items() if not k.startswith("visual.") and k not in _OPEN_CLIP_SHARED}
    vision = {k: v for k, v in sd.items() if k.startswith("visual.")}
    return text, vision


def sd_checkpoint_vae(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE of a Stable Diffusion (ldm) checkpoint, without its ``first_stage_model.`` prefix."""
    vae = {k[len(SD_VAE_PREFIX):]: v for k, v in sd.items() if k.startswith(SD_VAE_PREFIX)}
    if "encoder.conv_in.weight" not in vae or "decoder.conv_out.weight" not in vae:
        raise CheckpointError("no VAE found: expected 'first_stage_model.encoder.*' and 'first_stage_model.decoder.*' "
                              "tensors, as in the SD2.1 checkpoint v2-1_512-ema-pruned.ckpt")
    return vae


def split_release_file(src: str | Path, out_dir: str | Path, *, dtype: str | None = None) -> dict[str, Path]:
    """Write the ComfyUI-loadable parts of an open_clip or SD checkpoint into `out_dir`; returns part -> path."""
    from safetensors.torch import save_file

    src, out_dir = Path(src), Path(out_dir)
    sd, _ = read_state_dict(src)
    if OPEN_CLIP_TEXT_KEY in sd and OPEN_CLIP_VISION_KEY in sd:
        text, vision = split_open_clip(sd)
        parts = {"text": text, "vision": vision}
    elif any(k.startswith(SD_VAE_PREFIX) for k in sd):
        parts = {"vae": sd_checkpoint_vae(sd)}
    else:
        raise CheckpointError(f"{src.name} is neither an open_clip model (open_clip_pytorch_model.bin) nor a Stable "
                              f"Diffusion checkpoint with a VAE (v2-1_512-ema-pruned.ckpt); nothing to extract")
    cast = torch_dtype(dtype) if dtype else None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, tensors in parts.items():
        path = out_dir / f"{src.stem}.{part}.safetensors"
        save_file({k: (v.to(cast) if cast is not None and v.is_floating_point() else v).contiguous()
                   for k, v in tensors.items()}, str(path), metadata={"format": "pt", "source": src.name})
        written[part] = path
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: split one release file."""
    parser = argparse.ArgumentParser(
        prog="python -m i2vgen_core split-encoders",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="open_clip_pytorch_model.bin or an SD checkpoint such as v2-1_512-ema-pruned.ckpt")
    parser.add_argument("out_dir", help="folder for the .text/.vision/.vae safetensors")
    parser.add_argument("--dtype", choices=sorted(CAST_NAMES), default=None, help="cast weights (default: keep)")
    args = parser.parse_args(argv)
    try:
        written = split_release_file(args.src, args.out_dir, dtype=args.dtype)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for part, path in written.items():
        print(f"{part}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

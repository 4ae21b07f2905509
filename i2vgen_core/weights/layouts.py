"""Reading UNet checkpoints of every public format, renaming their keys, inferring the configuration, exporting.

Formats: diffusers (`I2VGenXLUNet` names, a folder with config.json or a single file), VGen (`i2vgen_xl_00854500.pth`,
`{'state_dict': ...}`) and ModelScope (`base_03_alldata_fps_v_80g_0789000.pth`, `non_ema_0035000.pth`). Our own
parameter names are the VGen/ModelScope ones with the `temopral_conv` typo fixed, linear temporal projections and a
flat image-latent temporal encoder.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..config import UNetConfig, variant_config
from .read import CheckpointError

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "module.", "model.", "unet.")
FORMATS = ("diffusers", "vgen", "modelscope")


def strip_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a common wrapper prefix such as `model.diffusion_model.` or `module.`."""
    sd = dict(sd)
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            hits = [k for k in sd if k.startswith(p)]
            if hits and len(hits) >= 0.9 * len(sd):
                sd = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
                changed = True
                break
    return sd


# ------------------------------------------------------------------------------------------------ detection
def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    """'diffusers', 'vgen' or 'modelscope' for family UNets; a CheckpointError describing anything else."""
    keys = set(sd)
    if "conv_in.weight" in keys and any(k.startswith("down_blocks.") for k in keys):
        if any(".temp_convs." in k for k in keys) and "transformer_in.proj_in.weight" in keys:
            return "diffusers"
        raise CheckpointError("this is a diffusers 2D UNet (no temporal layers), e.g. Stable Diffusion's; expected "
                              "an I2VGen-XL, MS-Image2Video or MS-Vid2Vid-XL video UNet")
    if "input_blocks.0.0.weight" in keys:
        if any(".temopral_conv." in k or ".temporal_conv." in k for k in keys):
            return "vgen" if "local_image_concat.0.weight" in keys else "modelscope"
        if any("time_stack" in k or "temporal" in k for k in keys):
            raise CheckpointError("this is a video UNet of another family (e.g. SVD or AnimateDiff-injected SD); "
                                  "expected an I2VGen-XL, MS-Image2Video or MS-Vid2Vid-XL UNet")
        raise CheckpointError("this looks like a Stable Diffusion (SD1.x/SD2.x) image UNet — it has no temporal "
                              "layers; expected an I2VGen-XL, MS-Image2Video or MS-Vid2Vid-XL video UNet")
    raise CheckpointError(f"not an I2VGen-XL family UNet: it looks like {describe(sd)}. Expected the UNet file "
                          f"(e.g. i2vgen_xl_00854500.pth, unet/diffusion_pytorch_model.safetensors, "
                          f"non_ema_0035000.pth)")


def describe(sd: Mapping[str, torch.Tensor]) -> str:
    """A short guess at what a non-UNet state dict is."""
    keys = list(sd)
    has = lambda *parts: any(all(p in k for p in parts) for k in keys)  # noqa: E731
    if has("first_stage_model.") and has("cond_stage_model."):
        return "a full Stable Diffusion checkpoint (UNet + VAE + text encoder)"
    if has("encoder.down") and has("decoder.up"):
        return "a VAE"
    if has("text_model.encoder.layers") or has("transformer.resblocks") or has("token_embedding"):
        return "a CLIP text encoder"
    if has("vision_model.encoder") or has("visual.transformer"):
        return "a CLIP vision encoder"
    if has("lora_"):
        return "a LoRA"
    sample = ", ".join(keys[:3])
    return f"an unknown model ({len(keys)} tensors, e.g. {sample})" if keys else "an empty state dict"


# ------------------------------------------------------------------------------------------------ key maps
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _diffusers_block_map(levels: int, per_level: int) -> list[tuple[str, str]]:
    """(diffusers prefix, our prefix) pairs of the trunk, longest first."""
    pairs = [("conv_in.", "input_blocks.0.0."), ("transformer_in.", "input_blocks.0.1."),
             ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
             ("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
             ("image_latents_proj_in.", "local_image_concat."),
             ("image_latents_context_embedding.", "local_image_embedding."),
             ("image_latents_temporal_encoder.norm1.", "local_temporal_encoder.norm."),
             ("image_latents_temporal_encoder.attn1.to_out.0.", "local_temporal_encoder.to_out."),
             ("image_latents_temporal_encoder.ff.net.0.proj.", "local_temporal_encoder.ff.0."),
             ("image_latents_temporal_encoder.ff.net.2.", "local_temporal_encoder.ff.2.")]
    for b in range(levels):
        for l in range(per_level):
            i = b * (per_level + 1) + l + 1
            pairs += _stage_pairs(f"down_blocks.{b}", l, f"input_blocks.{i}")
        if b != levels - 1:
            pairs.append((f"down_blocks.{b}.downsamplers.0.conv.", f"input_blocks.{(b + 1) * (per_level + 1)}.op."))
    pairs += [(f"mid_block.resnets.0.{d}.", f"middle_block.0.{o}.") for d, o in _RESNET.items()]
    pairs += [(f"mid_block.resnets.1.{d}.", f"middle_block.3.{o}.") for d, o in _RESNET.items()]
    pairs += [("mid_block.temp_convs.0.", "middle_block.0.temporal_conv."),
              ("mid_block.temp_convs.1.", "middle_block.3.temporal_conv."),
              ("mid_block.attentions.0.", "middle_block.1."), ("mid_block.temp_attentions.0.", "middle_block.2.")]
    for b in range(levels):
        for l in range(per_level + 1):
            pairs += _stage_pairs(f"up_blocks.{b}", l, f"output_blocks.{b * (per_level + 1) + l}")
    return pairs


def _stage_pairs(block: str, l: int, ours: str) -> list[tuple[str, str]]:
    pairs = [(f"{block}.resnets.{l}.{d}.", f"{ours}.0.{o}.") for d, o in _RESNET.items()]
    pairs += [(f"{block}.temp_convs.{l}.", f"{ours}.0.temporal_conv."),
              (f"{block}.attentions.{l}.", f"{ours}.1."), (f"{block}.temp_attentions.{l}.", f"{ours}.2.")]
    return pairs


def _diffusers_layout(sd: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    levels = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"down_blocks\.(\d+)\.", k)))
    per_level = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k)))
    return levels, per_level


def _upsampler_targets(sd_ours: Mapping[str, torch.Tensor], levels: int,
                       per_level: int) -> dict[int, tuple[int, int]]:
    """For each up level with an upsampler: (output block index, position of the Upsample inside it)."""
    out = {}
    for b in range(levels - 1):
        idx = b * (per_level + 1) + per_level
        out[b] = (idx, 3 if f"output_blocks.{idx}.1.norm.weight" in sd_ours else 1)
    return out


def from_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename diffusers `I2VGenXLUNet` keys to ours (q/k/v of the image temporal encoder are fused)."""
    levels, per_level = _diffusers_layout(sd)
    pairs = sorted(_diffusers_block_map(levels, per_level), key=lambda p: -len(p[0]))
    out: dict[str, torch.Tensor] = {}
    qkv = {}
    pending_up = {}
    for key, value in sd.items():
        m = re.match(r"image_latents_temporal_encoder\.attn1\.to_([qkv])\.weight$", key)
        if m:
            qkv[m.group(1)] = value
            continue
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$", key)
        if m:
            pending_up[(int(m.group(1)), m.group(2))] = value
            continue
        out[_rename(key, pairs)] = value  # fps/context embeddings keep their names; leftovers are reported later
    if qkv:
        if set(qkv) != {"q", "k", "v"}:
            raise CheckpointError("the image-latent temporal encoder misses some of to_q/to_k/to_v")
        out["local_temporal_encoder.to_qkv.weight"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]])
    targets = _upsampler_targets(out, levels, per_level)
    for (b, rest), value in pending_up.items():
        if b not in targets:
            raise CheckpointError(f"unexpected upsampler in up block {b}")
        idx, pos = targets[b]
        out[f"output_blocks.{idx}.{pos}.conv.{rest}"] = value
    return out


def to_diffusers(sd: Mapping[str, torch.Tensor], config: UNetConfig) -> dict[str, torch.Tensor]:
    """Our keys -> diffusers `I2VGenXLUNet` keys (inverse of from_diffusers)."""
    levels, per_level = len(config.block_channels), config.num_res_blocks
    pairs = sorted(((o, d) for d, o in _diffusers_block_map(levels, per_level)), key=lambda p: -len(p[0]))
    targets = {v: b for b, v in _upsampler_targets(sd, levels, per_level).items()}
    out = {}
    for key, value in sd.items():
        if key == "local_temporal_encoder.to_qkv.weight":
            for name, part in zip("qkv", value.chunk(3)):
                out[f"image_latents_temporal_encoder.attn1.to_{name}.weight"] = part
            continue
        m = re.match(r"output_blocks\.(\d+)\.(\d+)\.conv\.(.*)$", key)
        if m and (int(m.group(1)), int(m.group(2))) in targets:
            out[f"up_blocks.{targets[(int(m.group(1)), int(m.group(2)))]}.upsamplers.0.conv.{m.group(3)}"] = value
            continue
        out[_rename(key, pairs)] = value
    return out


def _rename(key: str, pairs) -> str:
    """Replace the first matching (source prefix, target prefix) of `pairs`; keys without a match stay."""
    for src, dst in pairs:
        if key.startswith(src):
            return dst + key[len(src):]
    return key


# VGen's image-latent temporal encoder (nested layers) vs our flat one
_ORIGINAL_IMAGE_ENCODER = [("local_temporal_encoder.layers.0.0.norm.", "local_temporal_encoder.norm."),
                           ("local_temporal_encoder.layers.0.0.fn.to_qkv.", "local_temporal_encoder.to_qkv."),
                           ("local_temporal_encoder.layers.0.0.fn.to_out.0.", "local_temporal_encoder.to_out."),
                           ("local_temporal_encoder.layers.0.1.net.0.0.", "local_temporal_encoder.ff.0."),
                           ("local_temporal_encoder.layers.0.1.net.2.", "local_temporal_encoder.ff.2.")]


def from_original(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VGen / ModelScope keys -> ours (typo fix, Conv1d temporal projections to Linear, flat image encoder)."""
    out = {}
    for key, value in sd.items():
        new = _rename(key.replace(".temopral_conv.", ".temporal_conv."), _ORIGINAL_IMAGE_ENCODER)
        if new.endswith((".proj_in.weight", ".proj_out.weight")) and value.ndim == 3:
            value = value.squeeze(-1)
        out[new] = value
    return out


def to_original(sd: Mapping[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """Ours -> VGen / ModelScope keys; temporal-transformer projections become Conv1d weights again."""
    back = [(ours, theirs) for theirs, ours in _ORIGINAL_IMAGE_ENCODER]
    out = {}
    temporal = _temporal_transformer_prefixes(sd)
    for key, value in sd.items():
        new = _rename(key.replace(".temporal_conv.", ".temopral_conv."), back)
        if key.endswith((".proj_in.weight", ".proj_out.weight")) and key.rsplit(".", 2)[0] in temporal:
            value = value.unsqueeze(-1)
        out[new] = value
    return out


def _temporal_transformer_prefixes(sd: Mapping[str, torch.Tensor]) -> set[str]:
    # A temporal transformer is the stage member after a spatial transformer, or input_blocks.0.1 / middle_block.2
    found = {"input_blocks.0.1", "middle_block.2"}
    for key in sd:
        m = re.match(r"((?:input|output)_blocks\.\d+)\.2\.proj_in\.weight$", key)
        if m:
            found.add(f"{m.group(1)}.2")
    return found


# ------------------------------------------------------------------------------------------------ config
def infer_config(sd: Mapping[str, torch.Tensor], hints: dict | None = None) -> UNetConfig:
    """Read the configuration off our-named tensors (plus a diffusers config.json or embedded config when given)."""
    if hints and "variant" in hints and ("block_channels" in hints or "model_channels" in hints):
        return UNetConfig.from_dict(hints)
    if "local_image_concat.0.weight" in sd:
        variant = "i2vgen_xl"
    elif "context_embedding.0.weight" in sd:
        variant = "ms_image2video"
    else:
        variant = "ms_vid2vid_xl"
    try:
        conv_in = sd["input_blocks.0.0.weight"]
        dim = conv_in.shape[0]
        init_inner = sd["input_blocks.0.1.proj_in.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"the UNet misses {err.args[0]}: the file is incomplete or not a family UNet") from err
    out_channels = sd["out.2.weight"].shape[0]
    levels, per_level = _original_layout(sd)
    channels, attn = [], []  # level 0 has conv_in's width (a tensor that disagrees is reported by the loader)
    for level in range(levels):
        first = level * (per_level + 1) + 1
        channels.append(dim if level == 0 else sd[f"input_blocks.{first}.0.in_layers.2.weight"].shape[0])
        attn.append(f"input_blocks.{first}.1.norm.weight" in sd)
    init_heads = 8
    head_dim = init_inner // init_heads
    cross = sd.get("middle_block.1.transformer_blocks.0.attn2.to_k.weight")
    if cross is None:
        raise CheckpointError("the middle block has no cross-attention layer: not a family UNet")
    context_dim = cross.shape[1]
    groups = int(hints.get("norm_num_groups") or 32) if hints else 32
    kw = dict(in_channels=out_channels, out_channels=out_channels, block_channels=tuple(channels),
              num_res_blocks=per_level, attention_levels=tuple(attn), head_dim=head_dim,
              init_temporal_heads=init_inner // head_dim, context_dim=context_dim, norm_groups=groups)
    if variant != "ms_vid2vid_xl":
        emb = sd["context_embedding.0.weight"]
        kw.update(image_embedding_dim=emb.shape[1],
                  num_image_tokens=sd["context_embedding.2.weight"].shape[0] // context_dim)
    if variant == "i2vgen_xl":
        kw.update(image_context_channels=(sd["local_image_embedding.0.weight"].shape[0],
                                          sd["local_image_embedding.3.weight"].shape[0]))
    expected_in = out_channels * (2 if variant == "i2vgen_xl" else 1)
    if conv_in.shape[1] != expected_in:
        raise CheckpointError(f"conv_in takes {conv_in.shape[1]} channels, expected {expected_in} for {variant}")
    return variant_config(variant, **kw)


def _original_layout(sd: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    downs = sorted(int(m.group(1)) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.op\.weight$", k)))
    if not downs:
        raise CheckpointError("no downsampling layers found: not a family UNet")
    per_level = downs[0] - 1
    return len(downs) + 1, per_level


# ------------------------------------------------------------------------------------------------ public
def to_ours(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Strip wrapper prefixes, detect the format, rename to our keys; returns (state dict, source format)."""
    sd = strip_prefix(sd)
    fmt = detect_format(sd)
    return (from_diffusers(sd) if fmt == "diffusers" else from_original(sd)), fmt


def export_state_dict(unet: torch.nn.Module, fmt: str = "vgen") -> dict[str, torch.Tensor]:
    """The model's weights under one format's key names: 'diffusers', 'vgen' or 'modelscope' (or 'ours')."""
    sd = {k: v for k, v in unet.state_dict().items()}
    if fmt == "ours":
        return sd
    if fmt == "diffusers":
        return to_diffusers(sd, unet.config)
    if fmt in ("vgen", "modelscope"):
        return to_original(sd, fmt)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)} or 'ours'")


def diffusers_config(config: UNetConfig) -> dict:
    """The config.json diffusers' I2VGenXLUNet would need for this (i2vgen_xl) configuration."""
    down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in config.attention_levels)
    up = tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(config.attention_levels))
    return {"_class_name": "I2VGenXLUNet", "in_channels": config.in_channels, "out_channels": config.out_channels,
            "down_block_types": list(down), "up_block_types": list(up),
            "block_out_channels": list(config.block_channels), "layers_per_block": config.num_res_blocks,
            "norm_num_groups": config.norm_groups, "cross_attention_dim": config.context_dim,
            "attention_head_dim": config.head_dim, "num_attention_heads": None, "sample_size": 32}

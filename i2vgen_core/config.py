"""Configuration of the spatio-temporal UNet: one dataclass describes every member of the family."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

VARIANTS = ("i2vgen_xl", "ms_image2video", "ms_vid2vid_xl")

#: What users call each variant (messages, logs, node texts, the model-file help).
VARIANT_NAMES = {
    "i2vgen_xl": "I2VGen-XL",
    "ms_image2video": "MS-Image2Video",
    "ms_vid2vid_xl": "MS-Vid2Vid-XL",
}

#: The SD2.1 VAE's latent scale: every family UNet denoises VAE latents multiplied by this.
VAE_LATENT_SCALE = 0.18215

#: Attention backends a UNet can be set to, in the order the loader node offers them ("auto": the host's choice,
#: else sdpa). Here rather than beside the kernels so that torch-free code (the memory estimate) can name them.
ATTENTION_BACKENDS = ("auto", "sdpa", "xformers", "chunked", "bmm", "flex", "sage")
#: What the memory estimate knows: the backends its activation counts were made with (none holds a whole score
#: matrix) and "math", PyTorch's unfused SDPA (what sdpa falls back to without a fused kernel), whose score matrix
#: it adds.
ESTIMATED_ATTENTION = ("sdpa", "xformers", "chunked", "math")


@dataclass(frozen=True)
class UNetConfig:
    """Everything that differs between checkpoints of the family; the defaults are the real 1.42 B model."""

    variant: str = "i2vgen_xl"
    in_channels: int = 4
    out_channels: int = 4
    block_channels: tuple[int, ...] = (320, 640, 1280, 1280)  # output channels of each resolution level
    num_res_blocks: int = 2
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    head_dim: int = 64
    init_temporal_heads: int = 8
    context_dim: int = 1024
    norm_groups: int = 32
    use_text: bool = True
    use_image_embedding: bool = True
    image_embedding_dim: int = 1024
    num_image_tokens: int = 4
    use_image_latent: bool = True
    image_context_channels: tuple[int, int] = (32, 64)
    use_fps: bool = True
    fps_optional: bool = False  # MS-Image2Video's code falls back to default_fps when none is given
    vid2vid_pad: bool = False
    default_fps: int = 16

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown UNet variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        if not self.block_channels or min(self.block_channels) < 1:
            raise ValueError(f"block_channels needs one positive channel count per level, got {self.block_channels}")
        if len(self.attention_levels) != len(self.block_channels):
            raise ValueError("attention_levels needs one entry per block_channels level")

    @property
    def model_channels(self) -> int:
        """Width of conv_in, the first level and the timestep embedding's sinusoid (ComfyUI patches read it)."""
        return self.block_channels[0]

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep (and fps) embedding."""
        return self.model_channels * 4

    @property
    def concat_channels(self) -> int:
        """Channels the image-latent branch adds to the noisy sample before conv_in."""
        return self.in_channels if self.use_image_latent else 0

    def replace(self, **changes) -> "UNetConfig":
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form (stored in converted safetensors metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        """Inverse of to_dict; unknown keys are ignored, lists become tuples. Metadata written before the channel
        plan was stored as channels (`model_channels` x `channel_mult`) is converted."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        if "block_channels" not in kw and "model_channels" in data:
            mult = tuple(data.get("channel_mult", (1, 2, 4, 4)))
            kw["block_channels"] = tuple(int(data["model_channels"]) * int(m) for m in mult)
        return cls(**kw)


def variant_config(variant: str, **overrides) -> UNetConfig:
    """The full-size configuration of a variant (what the public checkpoint holds)."""
    base = {
        "i2vgen_xl": dict(),
        "ms_image2video": dict(use_text=False, use_image_latent=False, default_fps=8, fps_optional=True),
        "ms_vid2vid_xl": dict(use_image_embedding=False, use_image_latent=False, use_fps=False,
                              vid2vid_pad=True, default_fps=8),
    }
    if variant not in base:
        raise ValueError(f"unknown UNet variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return UNetConfig(variant=variant, **{**base[variant], **overrides})


def tiny_config(variant: str = "i2vgen_xl", **overrides) -> UNetConfig:
    """A few-hundred-thousand-parameter configuration of a variant, for tests and demo weights."""
    small = dict(block_channels=(32, 64, 64, 64), head_dim=16, norm_groups=32)
    return variant_config(variant, **{**small, **overrides})

"""Peak memory of a run: a formula fitted to counted activation bytes and to GPU measurements. Torch-free; the tool
that counts the bytes is `i2vgen_core.network.live_bytes`.

How the formula was made (``bench/memory_counts.py`` re-derives every constant and writes
``bench/measured/cpu_activation_counts.json``):

* UNet activations: the full-size UNet of each variant was run on the meta device (no memory used, real shapes)
  under `network.live_bytes.LiveTensorBytes`, which adds a tensor storage's bytes when an op creates it and subtracts them when the
  storage is freed, so its peak is the largest sum of live intermediate tensors of the forward. The peak is
  linear in batch x frames x latent height x latent width: 10386 elements of the compute dtype per latent
  position (10376 without I2VGen-XL's image branch) (the attention itself adds nothing to the peak with a fused kernel, flash / xformers /
  our chunked path; PyTorch's unfused "math" SDPA adds the score matrix of the 1/8-size spatial attention).
* VAE decode: the same count on diffusers' SD2.1 AutoencoderKL gives 768 elements per output pixel per frame.
* GPU factors: the counted bytes against the H100 peaks in ``bench/measured/h100_2026-11-24_gpu.json``
  (``torch.cuda.max_memory_allocated``): UNet activations x1.006 (allocator rounding, workspaces), VAE decode
  x1.59 (cuDNN convolution workspaces at full resolution).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from .config import ESTIMATED_ATTENTION, UNetConfig
from .dtypes import dtype_bytes
from .sizes import VAE_SCALE

GIB = 2 ** 30

#: Parameters of the full-size UNets (counted from the model built on the meta device).
UNET_PARAMS = {"i2vgen_xl": 1_420_469_224, "ms_image2video": 1_419_843_396, "ms_vid2vid_xl": 1_411_233_860}
#: Parameters of the SD2.1 VAE (encoder + decoder; ComfyUI loads both).
VAE_PARAMS = 83_653_863
#: Counted peak live activation elements per latent position (batch x frames x h/8 x w/8) of one UNet forward.
UNET_ELEMENTS_PER_LATENT = {"i2vgen_xl": 10386, "ms_image2video": 10376, "ms_vid2vid_xl": 10376}
#: Counted peak live elements per output pixel per frame of one SD2.1 VAE decode.
VAE_ELEMENTS_PER_PIXEL = 768
#: Measured GPU peak / counted bytes (H100, PyTorch caching allocator).
UNET_GPU_FACTOR = 1.006
VAE_GPU_FACTOR = 1.59
#: Fixed extra of a sampling step: embeddings, conditioning, sampler state (counted constant, rounded up).
SAMPLING_OVERHEAD = 64 * 2 ** 20
#: Heads of the first (largest) spatial attention level: 320 channels / head_dim 64.
FIRST_LEVEL_HEADS = UNetConfig().model_channels // UNetConfig().head_dim

#: The attention names the estimate takes (see config.ESTIMATED_ATTENTION).
ATTENTION = ESTIMATED_ATTENTION


def latent_size(width: int, height: int, variant: str = "i2vgen_xl") -> tuple[int, int]:
    """Latent (h, w) of a pixel size."""
    return int(height) // VAE_SCALE, int(width) // VAE_SCALE


def unet_activation_bytes(batch: int, frames: int, width: int, height: int, compute_dtype="fp16",
                          attention: str = "sdpa", gpu: bool = True, variant: str = "i2vgen_xl") -> int:
    """Peak live activation bytes of one UNet forward on `batch` videos (CFG batched: pass 2 x batch)."""
    if attention not in ATTENTION:
        raise ValueError(f"unknown attention {attention!r}; expected one of {', '.join(ATTENTION)}")
    h, w = latent_size(width, height)
    elem = dtype_bytes(compute_dtype)
    positions = int(batch) * int(frames) * h * w
    total = UNET_ELEMENTS_PER_LATENT[variant] * positions * elem * (UNET_GPU_FACTOR if gpu else 1.0)
    if attention == "math":  # unfused SDPA materialises fp32 scores of the first spatial attention
        total += int(batch) * int(frames) * FIRST_LEVEL_HEADS * (h * w) ** 2 * 4
    return int(total) + SAMPLING_OVERHEAD


def vae_decode_bytes(width: int, height: int, frames_per_batch: int = 2, tile_size: Optional[int] = None,
                     dtype="fp16", gpu: bool = True) -> int:
    """Peak activation bytes of decoding `frames_per_batch` frames at once (optionally in square pixel tiles)."""
    px_w, px_h = int(width), int(height)
    if tile_size:
        px_w, px_h = min(px_w, int(tile_size)), min(px_h, int(tile_size))
    elem = dtype_bytes(dtype)
    work = VAE_ELEMENTS_PER_PIXEL * px_w * px_h * max(1, int(frames_per_batch)) * elem
    return int(work * (VAE_GPU_FACTOR if gpu else 1.0))


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of the parts of a run's peak; `peak` has everything resident, `minimum` lets ComfyUI offload."""

    unet_weights: int
    vae_weights: int
    sampling: int
    decode: int
    latents: int

    @property
    def peak(self) -> int:
        """UNet + VAE resident, the larger of sampling and decode working sets."""
        return self.unet_weights + self.vae_weights + max(self.sampling, self.decode) + self.latents

    @property
    def minimum(self) -> int:
        """Only what one stage needs (ComfyUI unloads the other model when memory is short)."""
        return max(self.unet_weights + self.sampling, self.vae_weights + self.decode) + self.latents

    def to_dict(self) -> dict:
        """Plain numbers in GiB."""
        d = {k: v / GIB for k, v in dataclasses.asdict(self).items()}
        return {**d, "peak": self.peak / GIB, "minimum": self.minimum / GIB}


def estimate_run(variant: str = "i2vgen_xl", width: int = 1280, height: int = 704, frames: int = 16, batch: int = 1,
                 cfg_batched: bool = True, weight_dtype="fp16", compute_dtype=None, attention: str = "sdpa",
                 frames_per_batch: int = 2, tile_size: Optional[int] = None, vae_dtype="fp16",
                 gpu: bool = True) -> MemoryEstimate:
    """Estimated peak memory of sampling + decoding one run (see the module docstring for the fit)."""
    if variant not in UNET_PARAMS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(UNET_PARAMS)}")
    wbytes = dtype_bytes(weight_dtype)
    compute = compute_dtype if compute_dtype is not None else ("fp16" if wbytes == 1 else weight_dtype)
    eff_batch = int(batch) * (2 if cfg_batched else 1)
    h, w = latent_size(width, height)
    latents = 4 * int(batch) * int(frames) * h * w * 4 * 4  # fp32 latent, noise, x0 and sampler state
    return MemoryEstimate(
        unet_weights=UNET_PARAMS[variant] * wbytes,
        vae_weights=VAE_PARAMS * dtype_bytes(vae_dtype),
        sampling=unet_activation_bytes(eff_batch, frames, width, height, compute, attention, gpu, variant),
        decode=vae_decode_bytes(width, height, frames_per_batch, tile_size, vae_dtype, gpu),
        latents=latents)


def gib(nbytes: float) -> str:
    """'12.3 GiB'."""
    return f"{nbytes / GIB:.1f} GiB"


def advice(estimate: MemoryEstimate, available: int, *, frames: int, weight_dtype="fp16",
           tile_size: Optional[int] = None, frames_per_batch: int = 2, windows: Optional[int] = None) -> list[str]:
    """What to change so the run fits in `available` bytes, most effective first (empty when it fits).

    `windows`: None for a node without context windows, 0 for one with them off, else the window length (then
    `frames` is the window's)."""
    if estimate.peak <= available:
        return []
    tips = []
    saved = estimate.unet_weights - estimate.unet_weights // dtype_bytes(weight_dtype)
    if saved >= GIB // 20:  # not worth naming for a small (e.g. already fp8 or demo-size) model
        tips.append(f"load the model with weight_dtype fp8_e4m3fn (saves {gib(saved)})")
    per_frame = estimate.sampling / max(1, frames)
    over = estimate.peak - available
    fewer = min(frames - 1, int(-(-over // max(1, per_frame))))
    if fewer > 0 and windows == 0:
        tips.append(f"refine in context windows: context_frames {frames - fewer} keeps the memory of "
                    f"{frames - fewer} frames whatever the video's length (saves {gib(per_frame * fewer)})")
    elif fewer > 0 and windows:
        tips.append(f"use a smaller context_frames (each frame of a window costs about {gib(per_frame)}; "
                    f"{frames - fewer} instead of {frames} saves {gib(per_frame * fewer)})")
    elif fewer > 0:
        tips.append(f"use fewer frames (each costs about {gib(per_frame)}; {frames - fewer} instead of {frames} "
                    f"saves {gib(per_frame * fewer)})")
    decode = []
    if not tile_size:
        decode.append("decode with tile on in I2VGen-XL Video Decode")
    if frames_per_batch > 1:
        decode.append("decode with frames_per_batch 1")
    if estimate.decode >= estimate.sampling:  # the decode is the peak: its levers first
        tips = decode + tips
    else:
        tips += decode
    tips.append("lower the width/height or batch_size")
    return tips


def describe(estimate: MemoryEstimate, *, free: Optional[int] = None, total: Optional[int] = None,
             device: str = "the GPU", label: str = "", offloads: bool = True,
             **advice_kw) -> tuple[str, Optional[str]]:
    """(one-line estimate, warning or None) for a node's UI and log; `label` follows "memory" (" with fp8 weights"),
    `offloads` says whether ComfyUI can move models off the device (a GPU) or not (the CPU)."""
    line = (f"Estimated peak memory{label} on {device}: {gib(estimate.peak)} (UNet weights "
            f"{gib(estimate.unet_weights)}, sampling {gib(estimate.sampling)}, decode {gib(estimate.decode)})")
    if free is not None:
        line += f"; free now: {gib(free)}"
    warning = None
    if free is not None and estimate.peak > free:
        tips = advice(estimate, free, **advice_kw)
        risk = "ComfyUI will offload and may run out of memory" if offloads else "it may swap or run out of memory"
        warning = (f"This run needs about {gib(estimate.peak)} but only {gib(free)} is free on {device}; {risk}. "
                   f"To fit: " + "; ".join(tips) + ".")
    return line, warning


def refusal(estimate: MemoryEstimate, total: int, *, device: str = "the GPU") -> Optional[str]:
    """A message when even the smallest form of the run (everything offloadable offloaded) exceeds `total`."""
    if estimate.minimum <= total:
        return None
    return (f"this run needs at least {gib(estimate.minimum)} of memory on {device} (sampling "
            f"{gib(estimate.sampling)} of activations alone) but the device has {gib(total)} in total; it cannot "
            f"run. Use fewer frames, a smaller width/height or batch_size, fp8 weights and a tiled decode.")

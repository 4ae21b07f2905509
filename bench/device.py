"""Device helpers shared by the GPU benchmarks (bench/gpu.py, bench/suite.py): peaks, syncs, peak memory, a random
SD2.1 VAE and the decoder's frame batching."""

from __future__ import annotations

import contextlib
import gc

import torch

from i2vgen_core.config import VAE_LATENT_SCALE  # bench/gpu.py puts the repository on sys.path
from i2vgen_core.dtypes import dtype_name

# Dense (no sparsity) fp16/bf16 tensor-core peaks in TFLOP/s.
PEAKS = {"H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0,
         "L40S": 362.0, "RTX 4090": 165.2}
SD21_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=768,
                block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def peak_tflops() -> float:
    """The dense fp16/bf16 peak of this GPU (0 when unknown)."""
    if not torch.cuda.is_available():
        return 0.0
    name = torch.cuda.get_device_name()
    for key, value in PEAKS.items():
        if key in name:
            return value
    return 0.0


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def peak_memory():
    """Yields a dict that holds the peak allocated GiB of the block afterwards (None on CPU)."""
    free()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = {}
    yield result
    sync()
    result["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None


def dtype_label(dtype: torch.dtype) -> str:
    """fp16 / bf16 / fp32: the label results carry for a dtype (the package's name for it)."""
    return dtype_name(dtype, str(dtype))


class Gpu:
    """The device helpers the suite uses (CUDA, or CPU for --tiny)."""

    is_cuda = property(lambda self: torch.cuda.is_available())
    sync = staticmethod(lambda: sync())
    free = staticmethod(lambda: free())
    peak_tflops = staticmethod(lambda: peak_tflops())
    count_tflop = staticmethod(lambda fn: count_tflop(fn))
    device_name = staticmethod(lambda: torch.cuda.get_device_name() if torch.cuda.is_available()
                               else "cpu (tiny smoke test)")


def count_tflop(fn) -> float:
    """TFLOP of one call, from torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e12


def random_vae(dtype, device, tiny=False):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    cfg = dict(SD21_VAE, block_out_channels=(32, 32, 32, 32)) if tiny else SD21_VAE
    vae = AutoencoderKL(**cfg)
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, 0.02)
    return vae.to(device, dtype).eval().requires_grad_(False)


def decode_video(vae, latents: torch.Tensor, frames_per_batch: int, tiled: bool) -> torch.Tensor:
    """Decode [B,4,F,h,w] a few frames at a time (our decoder node's strategy); frames land on the CPU."""
    (vae.enable_tiling if tiled else vae.disable_tiling)()
    b, c, f, h, w = latents.shape
    flat = latents.transpose(1, 2).reshape(b * f, c, h, w)
    out = []
    for i in range(0, flat.shape[0], frames_per_batch):
        out.append(vae.decode(flat[i:i + frames_per_batch] / VAE_LATENT_SCALE).sample.float().cpu())
    return torch.cat(out)

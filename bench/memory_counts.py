"""Counts peak live activation bytes of the full-size UNets and the SD2.1 VAE decode on the meta device (CPU, no
memory used), derives the constants of `i2vgen_core.memory`, and states the estimate's error against every GPU
measurement in bench/measured/*_gpu.json.

    python bench/memory_counts.py [--out bench/measured/cpu_activation_counts.json]
    python bench/memory_counts.py --cpu-points     # also run the full-size UNets on the CPU (fp32, ~7 GB, minutes)

``--cpu-points`` measures real forwards: the peak of tensor memory PyTorch's CPU allocator had allocated during one
forward of the full-size UNet (random weights, fp32, small latents) above what was allocated before it (weights and
inputs), against the estimate's activation term for the same run (``gpu=False``: no GPU allocator factor). These
are out-of-sample points: the constants come from the meta-device counts, not from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from i2vgen_core import memory as M  # noqa: E402
from i2vgen_core.network.live_bytes import LiveTensorBytes  # noqa: E402
from i2vgen_core.config import variant_config  # noqa: E402
from i2vgen_core import build_unet  # noqa: E402

SHAPES = {  # (batch, frames, latent h, latent w)
    "i2vgen_xl": [(2, 16, 88, 160), (1, 16, 88, 160), (2, 8, 88, 160), (2, 32, 64, 112), (2, 16, 32, 32)],
    "ms_image2video": [(2, 32, 56, 56), (2, 16, 88, 160), (1, 8, 32, 32)],
    "ms_vid2vid_xl": [(2, 32, 90, 160), (2, 16, 58, 104), (1, 32, 90, 160)],
}


def unet_peak(variant: str, b: int, f: int, h: int, w: int, dtype=torch.float16, attention: str = "sdpa",
              device: str = "meta") -> int:
    """Peak live bytes of one forward of the full-size UNet (inputs and weights excluded)."""
    config = variant_config(variant)
    unet = build_unet(config, device=device, dtype=dtype).eval()
    if attention != "sdpa":
        unet.set_attention_backend(attention, device)
    make = (lambda *s: torch.empty(*s, dtype=dtype, device=device))
    kw = {}
    if config.use_text:
        kw["text"] = make(b, 77, config.context_dim)
    if config.use_image_embedding:
        kw["image_embedding"] = make(b, config.image_embedding_dim)
    if config.use_image_latent:
        kw["image_latent"] = make(b, 4, h, w)
    if config.use_fps:
        kw["fps"] = 16
    x, t = make(b, 4, f, h, w), torch.full((b,), 500, device=device)
    counter = LiveTensorBytes()
    with torch.inference_mode(), counter:
        out = unet(x, t, **kw)
        del out
    return counter.peak


CPU_POINTS = [("i2vgen_xl", 2, 8, 32, 32), ("i2vgen_xl", 1, 16, 24, 40), ("ms_vid2vid_xl", 2, 8, 26, 48)]


def cpu_points() -> list[dict]:
    """Measured CPU peaks (allocator, fp32, full-size random UNets) against the estimate's activation term."""
    sys.path.insert(0, str(ROOT / "bench"))
    from common import make_inputs, peak_cpu_allocated, random_ours

    rows, built = [], {}
    for variant, b, f, h, w in CPU_POINTS:
        if variant not in built:
            built.clear()
            built[variant] = random_ours(variant_config(variant)).eval().requires_grad_(False)
        unet, config = built[variant], built[variant].config
        ours, _, x, t = make_inputs(config, b, f, h, w, seed=0)
        kw = {k: v for k, v in ours.items() if getattr(config, f"use_{k}")}  # what the variant takes

        def forward():
            with torch.inference_mode():
                return unet(x, t, **kw).shape

        forward()  # warm-up: one-time allocations (oneDNN, thread pools) are not the forward's
        _, measured = peak_cpu_allocated(forward)
        estimated = M.unet_activation_bytes(b, f, w * 8, h * 8, "fp32", gpu=False, variant=variant) \
            - M.SAMPLING_OVERHEAD
        rows.append({"run": f"{variant} {b}x{f}x{h}x{w} one forward, fp32, CPU", "measured_gib": measured / M.GIB,
                     "estimated_gib": estimated / M.GIB, "error_pct": 100.0 * (estimated - measured) / measured})
        print(f"{rows[-1]['run']:50s} measured {measured / M.GIB:.3f} GiB  estimated {estimated / M.GIB:.3f} GiB  "
              f"error {rows[-1]['error_pct']:+.1f} %", flush=True)
    return rows


def vae_peak(n: int, h: int, w: int, dtype=torch.float16) -> int:
    """Peak live bytes of decoding n latents [n, 4, h, w] with diffusers' SD2.1 AutoencoderKL (meta device)."""
    from diffusers import AutoencoderKL
    with torch.device("meta"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=768,
                            block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4).to(dtype)
    counter = LiveTensorBytes()
    with torch.inference_mode(), counter:
        out = vae.decode(torch.empty(n, 4, h, w, dtype=dtype, device="meta")).sample
        del out
    return counter.peak


def measured_points(measured_dir: Path) -> list[dict]:
    """Every GPU peak in bench/measured/*_gpu.json with the estimate for the same run and its error."""
    rows = []
    for path in sorted(measured_dir.glob("*_gpu.json")):
        data = json.loads(path.read_text())
        rows.extend(compare(data, path.name))
    return rows


def compare(data: dict, source: str = "") -> list[dict]:
    """Estimate vs measured for the runs bench/gpu.py records (peak_gib = torch.cuda.max_memory_allocated)."""
    rows = []

    def add(name, measured, estimated):
        rows.append({"source": source, "run": name, "measured_gib": measured, "estimated_gib": estimated / M.GIB,
                     "error_pct": 100.0 * (estimated / M.GIB - measured) / measured})

    if "base_run_fp16" in data:  # UNet + VAE resident, 50 batched-CFG steps, decode 2 frames at a time
        e = M.estimate_run("i2vgen_xl", 1280, 704, data["base_run_fp16"]["frames"], 1, weight_dtype="fp16")
        add("I2VGen-XL 1280x704x16 base run + decode (fp16)", data["base_run_fp16"]["peak_gib"],
            e.unet_weights + e.vae_weights + max(e.sampling, e.decode))
    if "fp8_storage_peak_gib_one_step" in data:  # fp8 weights, one CFG step
        e = M.estimate_run("i2vgen_xl", 1280, 704, 16, 1, weight_dtype="fp8")
        add("I2VGen-XL 1280x704x16 CFG step, fp8 weights", data["fp8_storage_peak_gib_one_step"],
            e.unet_weights + e.sampling)
    if "refine_step_fp16" in data:
        e = M.estimate_run("ms_vid2vid_xl", 1280, 720, data["refine_step_fp16"]["frames"], 1, weight_dtype="fp16")
        add("MS-Vid2Vid-XL 1280x720x32 CFG step (fp16)", data["refine_step_fp16"]["peak_gib"],
            e.unet_weights + e.sampling)
    vae_w = M.VAE_PARAMS * 2
    for key, fpb, tile in (("vae_decode_chunk2_720p_32f", 2, None), ("vae_decode_chunk8_720p_32f", 8, None),
                           ("vae_decode_chunk2_tiled_720p_32f", 2, (768, 720))):
        if key in data:
            if tile:  # diffusers' tiling of this VAE: 96-latent (768 px) tiles, the frame is 720 px high
                est = vae_w + int(M.VAE_ELEMENTS_PER_PIXEL * tile[0] * tile[1] * fpb * 2 * M.VAE_GPU_FACTOR)
            else:
                est = vae_w + M.vae_decode_bytes(1280, 720, fpb)
            add(f"VAE decode 1280x720, {fpb} frames at a time" + (" tiled" if tile else ""), data[key]["peak_gib"],
                est)
    for name in ("ablations_ms_float16",):
        msg = data.get(name, {}).get("sdpa_only_math", "")
        if "Tried to allocate" in msg:  # the unfused score matrix of the first spatial attention, one allocation
            alloc = float(msg.split("Tried to allocate")[1].split("GiB")[0])
            est = 2 * 16 * M.FIRST_LEVEL_HEADS * (88 * 160) ** 2 * 4
            add("math SDPA score matrix (one allocation, fp16 CFG step)", alloc, est)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "bench" / "measured" / "cpu_activation_counts.json"))
    parser.add_argument("--cpu-points", action="store_true", help="also measure full-size forwards on the CPU")
    parser.add_argument("--only-cpu-points", action="store_true", help="only those; merged into --out")
    args = parser.parse_args()
    if args.only_cpu_points:
        result = json.loads(Path(args.out).read_text())
        result["cpu_measured"] = cpu_points()
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print("wrote", args.out)
        return
    result = {"unet": [], "vae": [], "params": {}}
    for variant, shapes in SHAPES.items():
        result["params"][variant] = sum(p.numel() for p in build_unet(variant_config(variant), device="meta")
                                        .parameters())
        for b, f, h, w in shapes:
            peak = unet_peak(variant, b, f, h, w)
            result["unet"].append({"variant": variant, "shape": [b, f, h, w], "peak_bytes": peak,
                                   "elements_per_latent": peak / (b * f * h * w * 2)})
            print(f"unet {variant:15s} {b}x{f}x{h}x{w}: {peak / M.GIB:7.3f} GiB, "
                  f"{peak / (b * f * h * w * 2):7.0f} elements / latent position")
    for n, h, w in ((1, 90, 160), (2, 90, 160), (8, 90, 160), (2, 64, 64)):
        peak = vae_peak(n, h, w)
        result["vae"].append({"shape": [n, h, w], "peak_bytes": peak,
                              "elements_per_pixel": peak / (n * h * w * 64 * 2)})
        print(f"vae {n}x{h}x{w}: {peak / M.GIB:.3f} GiB, {peak / (n * h * w * 64 * 2):.0f} elements / pixel")
    result["vs_measured"] = measured_points(ROOT / "bench" / "measured")
    if args.cpu_points:
        result["cpu_measured"] = cpu_points()
    for row in result["vs_measured"]:
        print(f"{row['run']:60s} measured {row['measured_gib']:7.2f} GiB  estimated {row['estimated_gib']:7.2f} GiB"
              f"  error {row['error_pct']:+.1f} %")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()

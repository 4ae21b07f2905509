"""GPU benchmark (CUDA): full-size random weights, no downloads. Prints a table and writes JSON.

    python bench/gpu.py --suite [--out bench/results/suite.json]     # every GPU figure, < 8 min on an H200
    python bench/gpu.py --suite --tiny                                # the same script end to end on CPU
    python bench/gpu.py [--out bench/results/gpu.json] [--quick] [--skip-diffusers] [--compile]

`--suite` is described in bench/suite.py and bench/README.md. Without it:

1. I2VGen-XL UNet, one CFG step (batch 2) at 1280x704x16 in fp16 and bf16: median ms of ours and of diffusers'
   I2VGenXLUNet (same weights, same process, interleaved), the ratio, achieved TFLOP/s and fraction of peak.
2. A full 50-step base run (DDIM, batched CFG) plus the VAE decode of 16 frames: wall time and peak memory.
3. MS-Vid2Vid-XL at 1280x720x32: ms per CFG step and peak memory; VAE decode of 32 frames at 1280x720 with our
   chunking / tiling settings: time and peak memory.
4. Ablations: the UNet step with each optimisation switched off (or on, for the opt-in ones) one at a time.
`--quick` shrinks frames and steps to check the script itself in a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]  # bench/, repo
from common import build_pair, interleaved_median, make_inputs, random_ours  # noqa: E402
from device import (Gpu, count_tflop, decode_video, dtype_label, free, peak_memory, peak_tflops,  # noqa: E402
                    random_vae, sync)

from i2vgen_core import load_unet  # noqa: E402
from i2vgen_core.config import variant_config  # noqa: E402
from i2vgen_core.dtypes import torch_dtype  # noqa: E402
from i2vgen_core.speed import levers as speed_levers  # noqa: E402

def unet_step_table(args, dtype, results):
    """Section 1 + 4: ours vs diffusers for one CFG step, and the ablations."""
    config = args.config("i2vgen_xl")
    frames, h, w = (4 if args.quick else 16), args.h, args.w
    ref, ours = build_pair(config, dtype=dtype, device=args.device, full_size_random=True)
    ours_kw, theirs_kw, x, t = make_inputs(config, 2, frames, h, w, dtype=dtype, device=args.device)
    name = str(dtype).replace("torch.", "")
    with torch.inference_mode():
        if args.skip_diffusers:
            ref = None
        else:
            a = ref(x, t, **theirs_kw).sample.float()
            b = ours(x, t, **ours_kw).float()
            results[f"{name}_max_abs_diff_vs_diffusers"] = (a - b).abs().max().item()
            results[f"{name}_output_absmax"] = a.abs().max().item()
        tflop = count_tflop(lambda: ours(x, t, **ours_kw))
        results[f"{name}_tflop_per_step_ours"] = tflop
        # the work diffusers does for the same step, from the same flop counter; ours skips the per-frame
        # repeats of the cross-attention keys/values, so "equivalent" TFLOP/s credits that saving
        ref_tflop = count_tflop(lambda: ref(x, t, **theirs_kw)) if ref is not None else None
        results[f"{name}_tflop_per_step_diffusers"] = ref_tflop
        fns = {"ours": lambda: ours(x, t, **ours_kw)}
        if ref is not None:
            fns["diffusers"] = lambda: ref(x, t, **theirs_kw)
        med = interleaved_median(fns, args.repeats, sync=sync, warmup=2)
        row = {k: v * 1e3 for k, v in med.items()}
        if "diffusers" in med:
            row["ratio_ours_over_diffusers"] = med["ours"] / med["diffusers"]
            row["speedup"] = med["diffusers"] / med["ours"]
        row["tflops_achieved"] = tflop / med["ours"]
        row["tflops_equivalent"] = ref_tflop / med["ours"] if ref_tflop else None
        peak = peak_tflops()
        row["fraction_of_peak"] = row["tflops_achieved"] / peak if peak else None
        row["equivalent_fraction_of_peak"] = row["tflops_equivalent"] / peak if peak and ref_tflop else None
        results[f"unet_step_{name}"] = row
        ref = None
        gc.collect()

        # ablations: one lever flipped at a time, everything else at its default
        abl = {"default": med["ours"]}
        levers = [("no_fused_projections", lambda u, on: speed_levers.set_fused_projections(u, not on)),
                  ("channels_last_on", lambda u, on: speed_levers.set_channels_last(u, on)),
                  ("attention_chunked", lambda u, on: u.set_attention_backend("chunked" if on else "sdpa"))]
        for label, flip in levers:
            flip(ours, True)
            abl[label] = interleaved_median({"x": lambda: ours(x, t, **ours_kw)}, args.repeats, sync=sync)["x"]
            flip(ours, False)
        for backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
            try:
                from torch.nn.attention import SDPBackend, sdpa_kernel
                with sdpa_kernel(getattr(SDPBackend, backend)):
                    abl[f"sdpa_only_{backend.lower()}"] = interleaved_median(
                        {"x": lambda: ours(x, t, **ours_kw)}, max(2, args.repeats // 2), sync=sync)["x"]
            except (RuntimeError, AttributeError) as err:
                abl[f"sdpa_only_{backend.lower()}"] = f"unavailable: {str(err).splitlines()[0][:80]}"
        if args.compile:
            start = time.perf_counter()
            speed_levers.compile_blocks(ours, mode=args.compile_mode)
            ours(x, t, **ours_kw)
            sync()
            abl["compile_blocks_first_call_s"] = f"{time.perf_counter() - start:.0f} s (compiling)"
            abl["compile_blocks_on"] = interleaved_median({"x": lambda: ours(x, t, **ours_kw)}, args.repeats,
                                                          sync=sync, warmup=2)["x"]

        results[f"ablations_ms_{name}"] = {k: (v * 1e3 if isinstance(v, float) else v) for k, v in abl.items()}
    sd = {k: v for k, v in ours.state_dict().items()}
    ours = None
    free()
    if dtype in (torch.float16, torch.float32) and hasattr(torch, "float8_e4m3fn"):
        fp8 = load_unet(sd, dtype=torch.float8_e4m3fn, compute_dtype=dtype, device=args.device)
        sd = None
        with torch.inference_mode(), peak_memory() as mem:
            results[f"ablations_ms_{name}"]["fp8_weight_storage"] = interleaved_median(
                {"x": lambda: fp8(x, t, **ours_kw)}, args.repeats, sync=sync)["x"] * 1e3
        results["fp8_storage_peak_gib_one_step"] = mem["peak_gib"]
        fp8 = None
    free()


def base_run(args, results):
    """Section 2: 50-step base stage + decode of 16 frames, fp16, peak memory of the whole thing."""
    from i2vgen_core.diffusion.pipeline import run_base_stage

    config = args.config("i2vgen_xl")
    frames, steps = (4, 3) if args.quick else (16, 50)
    dtype = args.dtype
    ours = random_ours(config, dtype=dtype, device=args.device)
    vae = random_vae(dtype, args.device, args.tiny)
    g = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(args.device, dtype)  # noqa: E731
    c = config.context_dim
    text, neg, emb, lat = r(1, 77, c), r(1, 77, c), r(1, config.image_embedding_dim), r(1, 4, args.h, args.w)
    with torch.inference_mode(), peak_memory() as mem:
        sync()
        start = time.perf_counter()
        latents = run_base_stage(ours, text=text, negative_text=neg, image_embedding=emb, image_latent=lat,
                                 fps=16, num_frames=frames, steps=steps, guidance_scale=9.0, generator=g)
        sync()
        sampled = time.perf_counter()
        video = decode_video(vae, latents.to(dtype), frames_per_batch=args.decode_batch, tiled=False)
        sync()
        end = time.perf_counter()
    results[f"base_run_{dtype_label(dtype)}"] = {"frames": frames, "steps": steps, "sampling_s": sampled - start,
                                "decode_s": end - sampled, "total_s": end - start, "peak_gib": mem["peak_gib"],
                                "video_shape": list(video.shape)}
    ours = vae = latents = video = None
    free()


def refine_run(args, results):
    """Section 3: MS-Vid2Vid-XL step at 1280x720x32 and the 32-frame 720p decode."""
    frames = 8 if args.quick else 32
    dtype = args.dtype
    config = args.config("ms_vid2vid_xl")
    unet = random_ours(config, dtype=dtype, device=args.device)
    g = torch.Generator(device="cpu").manual_seed(0)
    h = 90 if not args.tiny else 10
    x = torch.randn(2, 4, frames, h, args.w, generator=g).to(args.device, dtype)
    text = torch.randn(2, 77, config.context_dim, generator=g).to(args.device, dtype)
    t = torch.full((2,), 599, device=args.device)
    with torch.inference_mode(), peak_memory() as mem:
        med = interleaved_median({"x": lambda: unet(x, t, text=text)}, args.repeats, sync=sync)["x"]
    results[f"refine_step_{dtype_label(dtype)}"] = {"frames": frames, "ms_per_cfg_step": med * 1e3, "peak_gib": mem["peak_gib"],
                                   "est_30_steps_s": med * 30}
    unet = x = None
    free()
    vae = random_vae(dtype, args.device, args.tiny)
    lat = torch.randn(1, 4, frames, h, args.w, generator=g).to(args.device, dtype)
    for label, fpb, tiled in (("decode_chunk2", args.decode_batch, False), ("decode_chunk8", 8, False),
                              ("decode_chunk2_tiled", args.decode_batch, True)):
        with torch.inference_mode(), peak_memory() as mem:
            sync()
            start = time.perf_counter()
            decode_video(vae, lat, frames_per_batch=fpb, tiled=tiled)
            sync()
            took = time.perf_counter() - start
        results[f"vae_{label}_720p_{frames}f"] = {"s": took, "peak_gib": mem["peak_gib"]}
    vae = None
    free()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/gpu.json")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--decode-batch", type=int, default=2, help="frames per VAE decode call (node default 2)")
    parser.add_argument("--quick", action="store_true", help="few frames/steps: check the script runs")
    parser.add_argument("--skip-diffusers", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time compile_blocks() (slow to compile)")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode for --compile (default: default)")
    parser.add_argument("--dtypes", default="fp16,bf16", help="which of fp16,bf16 the step table measures")
    parser.add_argument("--sections", default="step,base,refine")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke-test the script itself on CPU with tiny models (no figures worth keeping)")
    parser.add_argument("--suite", action="store_true", help="every GPU figure in one run (bench/suite.py)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="--suite: skip the remaining optional sections when this many seconds have passed")
    parser.add_argument("--levers", default="fused_kernels,bmm,cuda_graphs",
                        help="--suite: levers for the second base run, the refine step and the ComfyUI ratio")
    parser.add_argument("--comfyui", default=None, help="--suite: a ComfyUI checkout (default $COMFYUI_PATH)")
    parser.add_argument("--only", default="", help="--suite: run only the sections whose names start with these "
                                                   "(comma-separated, e.g. step_float16,comfyui)")
    args = parser.parse_args()
    if args.suite:
        return main_suite(args)
    if args.tiny:
        from i2vgen_core import tiny_config
        args.device, args.dtype, args.config, args.h, args.w = "cpu", torch.float32, tiny_config, 8, 16
        dtypes = (torch.float32,)
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py needs a CUDA GPU (use --tiny to smoke-test it, bench/unet_vs_diffusers.py for "
                     "a CPU comparison)")
        args.device, args.dtype, args.config, args.h, args.w = "cuda", torch.float16, variant_config, 88, 160
        dtypes = tuple(torch_dtype(d) for d in args.dtypes.split(","))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    results = {"device": torch.cuda.get_device_name() if not args.tiny else "cpu (tiny smoke test)",
               "torch": torch.__version__, "peak_tflops": peak_tflops(), "quick": args.quick}
    sections = args.sections.split(",")
    if "step" in sections:
        for dtype in dtypes:
            unet_step_table(args, dtype, results)
    if "base" in sections:
        base_run(args, results)
    if "refine" in sections:
        refine_run(args, results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {args.out}")


def print_table(results: dict) -> None:
    print(f"device: {results['device']}  torch {results['torch']}  peak {results['peak_tflops']} TFLOP/s")
    for name in ("float16", "bfloat16", "float32"):
        row = results.get(f"unet_step_{name}")
        if not row:
            continue
        d = row.get("diffusers")
        print(f"UNet CFG step {name}: ours {row['ours']:.1f} ms" + (f", diffusers {d:.1f} ms, speedup "
              f"{row['speedup']:.2f}x" if d else "") + f", {row['tflops_achieved']:.0f} TFLOP/s"
              + (f" ({row['fraction_of_peak']:.0%} of peak)" if row["fraction_of_peak"] else "")
              + (f"; diffusers-equivalent {row['tflops_equivalent']:.0f} TFLOP/s" if row["tflops_equivalent"] else "")
              + (f" ({row['equivalent_fraction_of_peak']:.0%})" if row["equivalent_fraction_of_peak"] else ""))
        if f"{name}_max_abs_diff_vs_diffusers" in results:
            print(f"  max |ours - diffusers| = {results[f'{name}_max_abs_diff_vs_diffusers']:.3e} "
                  f"(output |max| {results[f'{name}_output_absmax']:.3f})")
        for k, v in results.get(f"ablations_ms_{name}", {}).items():
            print(f"  {k:32s} {v:.1f} ms" if isinstance(v, float) else f"  {k:32s} {v}")
    for key in results:
        if key.startswith(("base_run_", "refine_step_")):
            print(key, json.dumps(results[key]))
    for key, value in results.items():
        if key.startswith("vae_"):
            print(key, json.dumps(value))


def main_suite(args) -> None:
    """--suite: every section within the budget; JSON after each section, the table at the end."""
    from suite import print_suite, run_suite

    if args.out == "bench/results/gpu.json":
        args.out = "bench/results/suite.json"
    # section costs in seconds on an H200, estimated from the H100 figures in bench/measured (README)
    args.need = {"step": 60, "base": 60, "refine": 25, "long_video": 60, "comfyui": 20, "flex": 90, "compile": 150}
    if args.tiny:
        from i2vgen_core import tiny_config

        def smallest(variant):  # two levels: the script's paths, not figures
            return tiny_config(variant, block_channels=(32, 64), attention_levels=(True, False))
        args.device, args.dtype, args.config = "cpu", torch.float32, smallest
        args.h, args.w, args.frames, args.steps, args.refine_h, args.refine_frames = 8, 8, 2, 2, 10, 2
        args.repeats = 1
        args.need = {k: 0 for k in args.need}
        args.budget_s = float("inf")  # the smoke test runs every section
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        if "cuda_graphs" in args.levers:  # CPU: no graphs to capture
            args.levers = ",".join(x for x in args.levers.split(",") if x != "cuda_graphs")
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py --suite needs a CUDA GPU (use --tiny to smoke-test it on CPU)")
        args.device, args.dtype, args.config = "cuda", torch.float16, variant_config
        args.h, args.w, args.frames, args.steps, args.refine_h, args.refine_frames = 88, 160, 16, 50, 90, 32
        args.repeats = min(args.repeats, 5)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    results = run_suite(args, Gpu())
    print_suite(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""Long-video figures: colour drift over chained extensions (synthetic, known drift) and peak memory of windowed
refinement against video length (one subprocess per length, so each peak is that run's own).

    python bench/long_video.py                       # both tables on the CPU (tiny MS-Vid2Vid-XL, 80x128 px)
    python bench/long_video.py --device cuda --channels 320 --height 720 --width 1280   # GPU max_memory_allocated
    python bench/long_video.py --out bench/measured/long_video_cpu.json
    COMFYUI_PATH=... $COMFYUI_PATH/.venv/bin/python bench/long_video.py --comfyui --skip-drift   # the node's path

Drift: a stand-in generator continues a synthetic scene from its last frame and adds a known colour drift per clip
(offset +0.030 / +0.010 / -0.025 on R / G / B and contrast x1.06 around mid-grey, growing linearly over the clip, so
its frame 0 equals the conditioning frame like I2VGen-XL's). Each clip is joined with i2vgen_core.video.long_video as the
Extend node does, with colour matching off, 'mean' and 'mean_std', applied in pixel space and in a 4-channel linear
"latent" space (a fixed random 3 -> 4 map standing in for the VAE's colour response). Reported: per clip, the mean
absolute difference of its per-channel mean colour from the first clip's (0..1 pixel units), and the largest jump
of the mean colour at a join.

Memory: SDEdit refinement (1 dpmpp_2m_sde step by default, cfg) of an F-frame latent with a random MS-Vid2Vid-XL
UNet, whole video at once versus WindowedUNet (32-frame windows, overlap 8), F = 32, 64, 96, 128. CPU: peak RSS of
the process (ru_maxrss) and the peak of tensor memory allocated during the refinement above what was allocated before
it (PyTorch's CPU allocator as its profiler reports it: the CPU counterpart of CUDA's max_memory_allocated, without
the allocator caches, thread stacks and libraries that RSS also holds); CUDA: torch.cuda.max_memory_allocated.
With ``--comfyui`` (run with ComfyUI's Python) the same runs go through what a user runs: the I2VGen-XL Refine
Sampler node's ``sample`` with ``context_frames`` (ComfyUI's IndexListContextHandler) on the pack's ComfyUI MODEL.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import peak_cpu_allocated  # noqa: E402

from i2vgen_core.video.long_video import (WindowedUNet, extended_length, join_clips, match_color,  # noqa: E402
                                    match_color_ramped, mean_color_drift)

DRIFT_OFFSET = (0.030, 0.010, -0.025)
DRIFT_GAIN = 1.06


# ----------------------------------------------------------------------------------------------- drift
def synthetic_clip(frames: int = 16, height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """[1, 3, F, H, W] in 0..1: a colour gradient with a bright disc moving right."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height).view(height, 1)
    x = torch.linspace(0, 1, width).view(1, width)
    base = torch.stack([0.3 + 0.4 * x.expand(height, width), 0.25 + 0.3 * y.expand(height, width),
                        0.6 - 0.3 * x * y], dim=0)
    out = []
    for t in range(frames):
        cx = 0.2 + 0.4 * t / max(1, frames - 1)
        disc = (((x - cx) ** 2 + (y - 0.5) ** 2) < 0.02).float()
        out.append(base * (1 - disc) + disc * torch.tensor([0.95, 0.85, 0.6]).view(3, 1, 1))
    video = torch.stack(out, dim=1).unsqueeze(0)
    return (video + 0.01 * torch.randn(video.shape, generator=g)).clamp(0, 1)


def drifting_continuation(cond: torch.Tensor, frames: int = 16) -> torch.Tensor:
    """A stand-in for I2VGen-XL: [1, 3, H, W] frame -> [1, 3, F, H, W] clip whose frame 0 is ``cond`` and whose
    content pans while colour and contrast drift by the known amount (growing linearly to the clip's end)."""
    offset = torch.tensor(DRIFT_OFFSET).view(1, 3, 1, 1)
    out = []
    for t in range(frames):
        s = t / max(1, frames - 1)
        moved = torch.roll(cond, shifts=t, dims=-1)
        out.append((moved - 0.5) * (1 + (DRIFT_GAIN - 1) * s) + 0.5 + offset * s)
    return torch.stack(out, dim=2)


def _latent_map(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.eye(4, 3) + 0.3 * torch.randn(4, 3, generator=g)
    return a, torch.linalg.pinv(a)


def _to_space(video: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bcfhw->bofhw", matrix, video)


def drift_run(extensions: int = 4, mode: str = "off", space: str = "pixel", clip: int = 16,
              ramped: bool = True) -> dict:
    """Chain ``extensions`` continuations as the Extend node does; per-clip mean colour drift and join jumps."""
    a, a_inv = _latent_map()
    video = synthetic_clip(clip)
    first = video
    clips = [video]
    for _ in range(extensions):
        new = drifting_continuation(video[:, :, -1], clip)
        match = match_color_ramped if ramped else match_color
        if space == "latent":
            new = _to_space(match(_to_space(new, a), _to_space(first, a), mode), a_inv)
        else:
            new = match(new, first, mode)
        clips.append(new[:, :, 1:])
        video = join_clips(video, new)
    assert video.shape[2] == extended_length(clip, clip, extensions)
    drift = [mean_color_drift(c, first) for c in clips]
    means = video.mean(dim=(3, 4))[0]  # [3, F]
    steps = (means[:, 1:] - means[:, :-1]).abs().mean(dim=0)
    joins = [clip - 1 + k * (clip - 1) for k in range(extensions)]  # index of the last frame before each join
    return {"mode": mode, "space": space, "ramped": ramped, "frames": int(video.shape[2]), "per_clip_drift": drift,
            "max_join_jump": float(max(steps[j] for j in joins)),
            "median_frame_step": float(steps.median())}


# ----------------------------------------------------------------------------------------------- memory
def memory_child(frames: int, window: int, overlap: int, device: str, channels: int, height: int,
                 width: int, steps: int = 1, allocated: bool = False) -> dict:
    """One refinement run in this process; its peak memory (RSS, or with `allocated` on the CPU the allocator's
    peak under the profiler, whose own buffers would inflate RSS)."""
    from i2vgen_core.config import variant_config
    from i2vgen_core import build_unet
    from i2vgen_core.diffusion.pipeline import run_refine_stage

    torch.manual_seed(0)
    cfg = variant_config("ms_vid2vid_xl", block_channels=(channels, 2 * channels, 2 * channels, 2 * channels),
                         head_dim=16, norm_groups=32)
    unet = build_unet(cfg).eval().requires_grad_(False)
    dtype = torch.float16 if device == "cuda" else torch.float32
    unet = unet.to(device, dtype)
    unet.set_attention_backend("sdpa" if device == "cuda" else "auto", device)
    h, w = height // 8, width // 8
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, frames, h, w, generator=g).to(device)
    text = torch.randn(1, 77, cfg.context_dim, generator=g).to(device)
    model = WindowedUNet(unet, window, overlap) if window > 0 else unet
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def refine():
        return run_refine_stage(model, latents, text=text, negative_text=torch.zeros_like(text), steps=steps,
                                generator=torch.Generator(device).manual_seed(2))

    result = {"frames": frames, "window": window, "overlap": overlap}
    if allocated and device == "cpu":
        out, peak = peak_cpu_allocated(refine)
        result["cpu_peak_allocated_mib"] = peak / 2**20
    else:
        out = refine()
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert out.shape == latents.shape and bool(torch.isfinite(out).all())
    if device == "cuda":
        torch.cuda.synchronize()
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def comfy_child(frames: int, window: int, overlap: int, channels: int, height: int, width: int,
                steps: int = 1, allocated: bool = False) -> dict:
    """One refinement through the Refine Sampler node on the pack's ComfyUI MODEL (CPU, in this process)."""
    from comfy_env import patcher_for, setup

    setup(os.environ["COMFYUI_PATH"])
    from i2vgen_pkg.i2vgen_core import build_unet
    from i2vgen_pkg.i2vgen_core.config import variant_config
    from i2vgen_pkg.nodes.sampling import I2VGenXLRefineSampler

    torch.manual_seed(0)
    cfg = variant_config("ms_vid2vid_xl", block_channels=(channels, 2 * channels, 2 * channels, 2 * channels),
                         head_dim=16, norm_groups=32)
    patcher = patcher_for(build_unet(cfg))
    g = torch.Generator().manual_seed(1)
    latent = {"samples": torch.randn(1, 4, frames, height // 8, width // 8, generator=g)}
    text = torch.randn(1, 77, cfg.context_dim, generator=g)
    node = I2VGenXLRefineSampler()

    def refine():
        return node.sample(patcher, [[text, {}]], [[torch.zeros_like(text), {}]], latent, seed=2, steps=steps,
                           context_frames=window, context_overlap=overlap)["result"][0]["samples"]

    result = {"frames": frames, "window": window, "overlap": overlap, "path": "comfyui refine sampler node"}
    if allocated:
        out, peak = peak_cpu_allocated(refine)
        result["cpu_peak_allocated_mib"] = peak / 2**20
    else:
        out = refine()
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert out.shape == latent["samples"].shape and bool(torch.isfinite(out).all())
    return result


def memory_table(lengths, window: int, overlap: int, args) -> list[dict]:
    """Run the child in a fresh interpreter per (length, windowed or not, and on the CPU per measure: RSS, then the
    allocator's peak under the profiler); one merged row each."""
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for frames in lengths:
        for win in (window, 0):
            row: dict = {}
            for allocated in ([False, True] if args.device == "cpu" else [False]):
                cmd = [sys.executable, __file__, "--child", str(frames), str(win), str(overlap),
                       "--device", args.device, "--channels", str(args.channels), "--height", str(args.height),
                       "--width", str(args.width), "--steps", str(args.steps), "--threads", str(args.threads)]
                cmd += (["--comfyui"] if args.comfyui else []) + (["--allocated"] if allocated else [])
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
                if done.returncode:
                    raise RuntimeError(done.stderr[-3000:])
                row.update(json.loads(done.stdout.strip().splitlines()[-1]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=3, type=int, metavar=("FRAMES", "WINDOW", "OVERLAP"), help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels", type=int, default=32, help="UNet model_channels (320 = the real MS-Vid2Vid-XL)")
    ap.add_argument("--height", type=int, default=80, help="pixel height (latent height must be 2 mod 8)")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1, help="refine steps (memory does not depend on them)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per child")
    ap.add_argument("--lengths", default="32,64,96,128")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--comfyui", action="store_true", help="measure the Refine Sampler node in ComfyUI (CPU; run "
                    "with ComfyUI's Python and COMFYUI_PATH set)")
    ap.add_argument("--allocated", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-drift", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.child:
        torch.set_num_threads(max(1, args.threads))
        if args.comfyui:
            print(json.dumps(comfy_child(*args.child, args.channels, args.height, args.width, args.steps,
                                         args.allocated)))
        else:
            print(json.dumps(memory_child(*args.child, args.device, args.channels, args.height, args.width,
                                          args.steps, args.allocated)))
        return 0
    results: dict = {}
    if not args.skip_drift:
        results["drift"] = [drift_run(4, mode, space, ramped=ramped) for space in ("pixel", "latent")
                            for mode in ("off", "mean", "mean_std") for ramped in (True, False)
                            if not (mode == "off" and not ramped)]
        for r in results["drift"]:
            kind = "ramped" if r["ramped"] else "whole"
            print(f"drift {r['space']:6s} {r['mode']:8s} {kind:6s} frames {r['frames']}: per clip "
                  + " ".join(f"{d:.4f}" for d in r["per_clip_drift"])
                  + f" | max join jump {r['max_join_jump']:.4f} (median frame step {r['median_frame_step']:.4f})")
    if not args.skip_memory:
        lengths = [int(v) for v in args.lengths.split(",")]
        results["memory"] = {"device": args.device, "path": "comfyui" if args.comfyui else "core",
                             "channels": args.channels, "size": [args.width, args.height],
                             "rows": memory_table(lengths, args.window, args.overlap, args)}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`bench/gpu.py --suite`: every GPU figure the README reports, in one process within a time budget (see
bench/README.md): a GPU session is rare and short, so one run must bring them all.

Sections, most important first; the JSON is rewritten after each one, so a run cut short keeps what it measured:
  1. step_<dtype>: one CFG step (batch 2) at 1280x704x16, ours vs diffusers' I2VGenXLUNet (same weights,
     interleaved), fp16 and bf16; TFLOP from torch's flop counter on both models; fraction of the dense peak.
  2. levers_<dtype>: each speed lever on (or off) alone and in combination: ms, and the output's difference to the
     plain path (max |d| and max |d| / max |ref|). fp8 compute: error against the same model in bf16.
  3. base_run: 50 DDIM steps (batched CFG) + VAE decode of 16 frames, plain and with the chosen levers.
  4. refine: MS-Vid2Vid-XL at 1280x720x32, ms per CFG step and peak memory.
     long_video_memory: max_memory_allocated of one MS-Vid2Vid-XL CFG step at 1280x720 over 32..128 frames, in
     32-frame windows (overlap 8, i2vgen_core.video.long_video.WindowedUNet) and whole.
  5. comfyui: apply_model of the pack's MODEL (ComfyUI's comfy package, no server) vs the core forward.
  6. optional, only while the budget lasts: FlexAttention (compiles), regional torch.compile (compile time).
`--tiny` runs the same code on CPU with tiny models (figures meaningless, the script checked end to end).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from common import build_pair, interleaved_median, make_inputs, random_ours

from i2vgen_core.speed import levers as speed_levers

REPO = Path(__file__).resolve().parent.parent


class Suite:
    """Holds the results, the clock and the settings of one suite run."""

    def __init__(self, args, gpu):
        self.args, self.gpu = args, gpu
        self.start = time.perf_counter()
        self.results = {"suite": True, "budget_s": args.budget_s, "sections_s": {}, "skipped": {}}
        self.out = Path(args.out)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def save(self) -> None:
        self.results["elapsed_s"] = self.elapsed()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=2, default=str))

    def section(self, name: str, fn, need_s: float = 0.0) -> None:
        """Run one section if `need_s` seconds of budget are left; record its time or why it was skipped."""
        if self.args.only and not any(name.startswith(o) for o in self.args.only.split(",")):
            return
        if self.left() < need_s:
            self.results["skipped"][name] = f"budget: {self.left():.0f} s left, section needs ~{need_s:.0f} s"
            print(f"[suite] skip {name}: {self.results['skipped'][name]}", flush=True)
            return
        print(f"[suite] {name} (t={self.elapsed():.0f} s)", flush=True)
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - one broken section must not lose the others' figures
            self.results["skipped"][name] = f"error: {type(err).__name__}: {str(err)[:300]}"
            traceback.print_exc()
        self.results["sections_s"][name] = time.perf_counter() - t0
        self.gpu.free()
        self.save()

    def time(self, fns: dict, repeats: int | None = None, warmup: int = 1) -> dict:
        """Median ms of each function (interleaved)."""
        warmup = 0 if self.args.tiny else warmup
        med = interleaved_median(fns, repeats or self.args.repeats, sync=self.gpu.sync, warmup=warmup)
        return {k: v * 1e3 for k, v in med.items()}


def diff(out: torch.Tensor, ref: torch.Tensor) -> dict:
    """Max abs difference and max abs difference over max |ref|."""
    d = (out.float() - ref.float()).abs().max().item()
    return {"max_abs_diff": d, "rel_max_diff": d / max(ref.float().abs().max().item(), 1e-12)}


def _levers(suite: Suite, unet, gpu: bool):
    """(label, switch on/off, skip reason or None) for each lever, applied to `unet` in place."""
    have_sage = importlib.util.find_spec("sageattention") is not None
    cl = lambda on: speed_levers.set_channels_last(unet, on)  # noqa: E731
    fk = lambda on: speed_levers.set_fused_kernels(unet, on)  # noqa: E731
    attn = lambda name: (lambda on: unet.set_attention_backend(name if on else "sdpa"))  # noqa: E731
    graphs = lambda on: speed_levers.set_cuda_graphs(unet, on)  # noqa: E731

    def combo(*switches):
        return lambda on: [s(on) for s in (switches if on else reversed(switches))]

    return [
        ("no_fused_projections", lambda on: speed_levers.set_fused_projections(unet, not on), None),
        ("channels_last", cl, None),
        ("fused_kernels", fk, None),
        ("fused_kernels+channels_last", combo(cl, fk), None),
        ("attention_bmm_temporal", attn("bmm"), None),
        ("attention_sage", attn("sage"),
         None if have_sage and gpu else "sageattention not installed or no CUDA (carry its wheel: bench/README.md)"),
        ("attention_chunked", attn("chunked"), None),
        ("cuda_graphs", graphs, None if gpu else "needs CUDA"),
        ("fused_kernels+bmm+cuda_graphs", combo(fk, attn("bmm"), graphs), None if gpu else "needs CUDA"),
        ("fused_kernels+bmm", combo(fk, attn("bmm")), None),
    ]


def step_and_levers(suite: Suite, dtype: torch.dtype, with_levers: bool) -> None:
    """Ours vs diffusers for one CFG step in `dtype`, then each lever on `ours`."""
    a, gpu = suite.args, suite.gpu
    name = str(dtype).replace("torch.", "")
    config = a.config("i2vgen_xl")
    ref, ours = build_pair(config, dtype=dtype, device=a.device, full_size_random=True)
    ours_kw, theirs_kw, x, t = make_inputs(config, 2, a.frames, a.h, a.w, dtype=dtype, device=a.device)
    run = lambda: ours(x, t, **ours_kw)  # noqa: E731
    row = {"shape": f"{a.w * 8}x{a.h * 8}x{a.frames}, batch 2"}
    with torch.inference_mode():
        plain = run().float()
        row.update({f"vs_diffusers_{k}": v for k, v in diff(plain, ref(x, t, **theirs_kw).sample).items()})
        row["tflop_ours"] = gpu.count_tflop(run)
        row["tflop_diffusers"] = gpu.count_tflop(lambda: ref(x, t, **theirs_kw))
        med = suite.time({"ours": run, "diffusers": lambda: ref(x, t, **theirs_kw)}, warmup=2)
        row.update(ours_ms=med["ours"], diffusers_ms=med["diffusers"], speedup=med["diffusers"] / med["ours"])
        peak = gpu.peak_tflops()
        row["tflops_ours"] = row["tflop_ours"] / med["ours"] * 1e3
        row["tflops_diffusers_equivalent"] = row["tflop_diffusers"] / med["ours"] * 1e3
        row["fraction_of_peak"] = row["tflops_ours"] / peak if peak else None
        suite.results[f"step_{name}"] = row
        ref = None
        gpu.free()
        suite.save()
        if not with_levers:
            return
        levers = {"plain": {"ms": med["ours"]}}
        for label, switch, skip in _levers(suite, ours, gpu.is_cuda):
            if skip:
                levers[label] = {"skipped": skip}
                continue
            try:
                switch(True)
                entry = diff(run(), plain)
                entry["ms"] = suite.time({"x": run})["x"]
            except Exception as err:  # noqa: BLE001
                entry = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            finally:
                switch(False)
            levers[label] = entry
            print(f"  {name} {label}: {entry}", flush=True)
        # fp8 compute (opt-in, changes numbers): error against this dtype's plain output
        for scaling in ("tensor", "row"):
            try:
                speed_levers.set_fp8_compute(ours, scaling)
                entry = diff(run(), plain)
                entry["ms"] = suite.time({"x": run})["x"]
                entry["emulated"] = not (gpu.is_cuda and torch.cuda.get_device_capability() >= (8, 9))
            except Exception as err:  # noqa: BLE001
                entry = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            finally:
                speed_levers.set_fp8_compute(ours, None)
            levers[f"fp8_compute_{scaling}"] = entry
            print(f"  {name} fp8_compute_{scaling}: {entry}", flush=True)
        suite.results[f"levers_{name}"] = levers
    ours = None


def fp8_layer_error(suite: Suite) -> None:
    """fp8 compute error vs bf16 on random full-width linear layers (the FF of the 1280-channel level)."""
    from i2vgen_core.speed.fp8 import enable_fp8_compute

    dev = suite.args.device
    torch.manual_seed(0)
    out = {}
    for n_in, n_out in ((1280, 10240), (5120, 1280), (320, 320)):
        layer = torch.nn.Linear(n_in, n_out).to(dev, torch.bfloat16)
        with torch.no_grad():
            layer.weight.normal_(0, n_in ** -0.5)
        x = torch.randn(4096, n_in, device=dev, dtype=torch.bfloat16)
        ref = layer(x).float()
        exact = torch.nn.functional.linear(x.double(), layer.weight.double(), layer.bias.double())
        for scaling in ("tensor", "row"):
            enable_fp8_compute(layer, scaling)
            got = layer(x).float()
            enable_fp8_compute(layer, None)
            out[f"{n_in}x{n_out}_{scaling}"] = {
                "rel_l2_vs_bf16": ((got - ref).norm() / ref.norm()).item(),
                "rel_l2_vs_fp64": ((got.double() - exact).norm() / exact.norm()).item()}
        out[f"{n_in}x{n_out}_bf16_rel_l2_vs_fp64"] = ((ref.double() - exact).norm() / exact.norm()).item()
    suite.results["fp8_layer_error"] = out


ATTENTION_LEVERS = ("bmm", "sage", "flex", "chunked")


def switch_levers(unet, spec: str, levers=speed_levers) -> list[str]:
    """Switch on the comma-separated levers of `spec` (fused_kernels, channels_last, bmm / sage / flex / chunked
    attention, cuda_graphs, compile) through `speed.levers.apply_levers`, in its order; returns them as named.
    `levers` is the module of the unet's own copy of the core (the ComfyUI section imports the pack as a package:
    its layer classes are other objects than i2vgen_core's)."""
    options, used = {}, []
    for lever in filter(None, spec.split(",")):
        if lever in ("fused_kernels", "channels_last", "cuda_graphs", "compile"):
            options[lever] = True
        elif lever in ATTENTION_LEVERS:
            options["attention"] = lever
        else:
            raise ValueError(f"unknown lever {lever!r}")
        used.append(lever)
    levers.apply_levers(unet, levers.SpeedLevers(**options))
    return used


def base_run(suite: Suite, spec: str) -> None:
    """50-step base stage + decode, plain or with the levers of `spec`."""
    from device import decode_video, peak_memory, random_vae

    from i2vgen_core.diffusion.pipeline import run_base_stage

    a, gpu = suite.args, suite.gpu
    config = a.config("i2vgen_xl")
    ours = random_ours(config, dtype=a.dtype, device=a.device)
    used = switch_levers(ours, spec)
    vae = random_vae(a.dtype, a.device, a.tiny)
    g = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(a.device, a.dtype)  # noqa: E731
    c = config.context_dim
    text, neg, emb, lat = r(1, 77, c), r(1, 77, c), r(1, config.image_embedding_dim), r(1, 4, a.h, a.w)
    with torch.inference_mode(), peak_memory() as mem:
        gpu.sync()
        t0 = time.perf_counter()
        latents = run_base_stage(ours, text=text, negative_text=neg, image_embedding=emb, image_latent=lat,
                                 fps=16, num_frames=a.frames, steps=a.steps, guidance_scale=9.0, generator=g)
        gpu.sync()
        t1 = time.perf_counter()
        video = decode_video(vae, latents.to(a.dtype), frames_per_batch=a.decode_batch, tiled=False)
        gpu.sync()
        t2 = time.perf_counter()
    key = "base_run_" + ("+".join(used) if used else "plain")
    suite.results[key] = {"dtype": str(a.dtype), "frames": a.frames, "steps": a.steps, "sampling_s": t1 - t0,
                          "decode_s": t2 - t1, "total_s": t2 - t0, "peak_gib": mem["peak_gib"],
                          "video_shape": list(video.shape), "target_s": 16.0}


def refine(suite: Suite, spec: str) -> None:
    """MS-Vid2Vid-XL per CFG step at 1280x720x32 and its peak memory."""
    from device import peak_memory

    a = suite.args
    config = a.config("ms_vid2vid_xl")
    unet = random_ours(config, dtype=a.dtype, device=a.device)
    used = switch_levers(unet, spec)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(2, 4, a.refine_frames, a.refine_h, a.w, generator=g).to(a.device, a.dtype)
    text = torch.randn(2, 77, config.context_dim, generator=g).to(a.device, a.dtype)
    t = torch.full((2,), 599, device=a.device)
    with torch.inference_mode(), peak_memory() as mem:
        med = suite.time({"x": lambda: unet(x, t, text=text)}, repeats=max(2, a.repeats - 2))["x"]
    key = "refine_step_" + ("+".join(used) if used else "plain")
    suite.results[key] = {"dtype": str(a.dtype), "shape": f"{a.w * 8}x{a.refine_h * 8}x{a.refine_frames}",
                          "ms_per_cfg_step": med, "peak_gib": mem["peak_gib"], "est_30_steps_s": med * 30 / 1e3}


def long_video_memory(suite: Suite) -> None:
    """Peak memory of one MS-Vid2Vid-XL CFG step against video length, in windows and whole (the plain network)."""
    from device import peak_memory
    from i2vgen_core.video.long_video import WindowedUNet

    a = suite.args
    config = a.config("ms_vid2vid_xl")
    unet = random_ours(config, dtype=a.dtype, device=a.device)
    window, overlap = a.refine_frames, a.refine_frames // 4
    text = torch.randn(2, 77, config.context_dim, generator=torch.Generator().manual_seed(1)).to(a.device, a.dtype)
    t = torch.full((2,), 599, device=a.device)
    rows = []
    suite.results["long_video_memory"] = {"dtype": str(a.dtype), "size": f"{a.w * 8}x{a.refine_h * 8}",
                                          "window": window, "overlap": overlap, "rows": rows}
    for frames in (window * k for k in (1, 2, 3, 4)):
        x = torch.randn(2, 4, frames, a.refine_h, a.w, generator=torch.Generator().manual_seed(frames))
        x = x.to(a.device, a.dtype)
        for windowed in (True, False):
            model = WindowedUNet(unet, window, overlap) if windowed else unet
            row = {"frames": frames, "windows": windowed}
            try:
                with torch.inference_mode(), peak_memory() as mem:
                    t0 = time.perf_counter()
                    model(x, t, text=text)
                    suite.gpu.sync()
                    row["s"] = time.perf_counter() - t0
                row["peak_gib"] = mem["peak_gib"]
            except torch.OutOfMemoryError as err:
                row["error"] = f"out of memory: {str(err)[:120]}"
            rows.append(row)
            print(f"[long_video_memory] {row}", flush=True)
            suite.gpu.free()
        suite.save()


def comfyui_path(suite: Suite, spec: str) -> None:
    """apply_model of the pack's MODEL through ComfyUI's comfy package vs the core forward, same object, interleaved."""
    a = suite.args
    root = a.comfyui or os.environ.get("COMFYUI_PATH")
    if not root or not (Path(root) / "comfy" / "model_base.py").exists():
        suite.results["comfyui"] = {"skipped": "ComfyUI not found: pass --comfyui PATH or set COMFYUI_PATH "
                                               "(bench/README.md says how to carry it to the GPU machine)"}
        return
    sys.path.insert(0, str(Path(root).resolve()))
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = not suite.gpu.is_cuda
        import comfy.model_management
        import comfy.model_patcher
    except Exception as err:  # noqa: BLE001 - a missing dependency of ComfyUI's
        suite.results["comfyui"] = {"skipped": f"ComfyUI not importable here: {type(err).__name__}: {err}"}
        return
    pkg_spec = importlib.util.spec_from_file_location("i2vgen_pkg", REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
    pkg = importlib.util.module_from_spec(pkg_spec)
    sys.modules["i2vgen_pkg"] = pkg
    pkg_spec.loader.exec_module(pkg)
    from i2vgen_pkg.i2vgen_core.network.unet import I2VGenUNet
    from i2vgen_pkg.nodes.comfy_model import I2VGenXLModel

    config = a.config("i2vgen_xl")
    torch.manual_seed(0)
    import comfy.ops
    from i2vgen_pkg.i2vgen_core import build_unet
    from i2vgen_pkg.i2vgen_core.speed import levers as pkg_levers
    from i2vgen_pkg.nodes.comfy_model import ComfyI2VGenUNet

    # the ComfyUI network, built as the loader builds it: ComfyUI's layer classes, the ComfyUI subclass
    operations = comfy.ops.pick_operations(a.dtype, None, load_device=torch.device(a.device))
    unet = build_unet(config, device="meta", ops=operations, network=ComfyI2VGenUNet).to_empty(device=a.device)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)
    unet = unet.to(a.dtype).eval().requires_grad_(False)
    used = switch_levers(unet, spec, pkg_levers)
    model = I2VGenXLModel(unet, weight_dtype=a.dtype, manual_cast_dtype=None, device=torch.device(a.device))
    dev = torch.device(a.device)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=dev, offload_device=dev)
    comfy.model_management.load_models_gpu([patcher])
    ours_kw, _, x, _ = make_inputs(config, 2, a.frames, a.h, a.w, dtype=a.dtype, device=a.device)
    sigma = model.model_sampling.sigmas[980].expand(2).to(a.device)
    timestep = model.model_sampling.timestep(sigma).to(a.device)
    core = lambda: I2VGenUNet.forward(unet, x, timestep, **ours_kw)  # noqa: E731
    comfy_call = lambda: model.apply_model(x, sigma, c_crossattn=ours_kw["text"],  # noqa: E731
                                           image_embedding=ours_kw["image_embedding"],
                                           image_latent=ours_kw["image_latent"], fps=ours_kw["fps"])
    with torch.inference_mode():
        med = suite.time({"core": core, "comfyui_apply_model": comfy_call}, warmup=2)
    suite.results["comfyui"] = {"levers": used, "core_ms": med["core"], "apply_model_ms": med["comfyui_apply_model"],
                                "ratio_apply_model_over_core": med["comfyui_apply_model"] / med["core"],
                                "target_ratio_max": 1.05}


def flex(suite: Suite) -> None:
    """FlexAttention for every attention layer (compiled on CUDA): first-call time and ms per step."""
    a = suite.args
    config = a.config("i2vgen_xl")
    unet = random_ours(config, dtype=a.dtype, device=a.device)
    kw, _, x, t = make_inputs(config, 2, a.frames, a.h, a.w, dtype=a.dtype, device=a.device)
    with torch.inference_mode():
        plain = unet(x, t, **kw)
        unet.set_attention_backend("flex")
        suite.gpu.sync()
        t0 = time.perf_counter()
        out = unet(x, t, **kw)
        suite.gpu.sync()
        first = time.perf_counter() - t0
        med = suite.time({"x": lambda: unet(x, t, **kw)})["x"]
    suite.results["attention_flex"] = {"first_call_s": first, "ms": med, **diff(out, plain)}


def compile_blocks(suite: Suite) -> None:
    """Regional torch.compile: compile time (first call), a second shape's (cond/uncond batch 1), ms per step,
    recompiles counted; the FX graph cache makes a second run of the same shapes compile faster."""
    import torch._dynamo.utils

    a = suite.args
    config = a.config("i2vgen_xl")
    unet = random_ours(config, dtype=a.dtype, device=a.device)
    kw, _, x, t = make_inputs(config, 2, a.frames, a.h, a.w, dtype=a.dtype, device=a.device)
    kw1 = {k: v[:1] for k, v in kw.items()}
    with torch.inference_mode():
        plain = unet(x, t, **kw)
        n = speed_levers.compile_blocks(unet)
        counters = torch._dynamo.utils.counters
        counters.clear()
        suite.gpu.sync()
        t0 = time.perf_counter()
        out = unet(x, t, **kw)
        suite.gpu.sync()
        first = time.perf_counter() - t0
        frames_after_first = dict(counters["stats"])
        second_shape = None
        if suite.left() > 2 * first + 30:  # batch 1 (cond/uncond run apart) compiles its own shapes once
            t0 = time.perf_counter()
            unet(x[:1], t[:1], **kw1)
            suite.gpu.sync()
            second_shape = time.perf_counter() - t0
        med = suite.time({"x": lambda: unet(x, t, **kw)})["x"]
        steady = dict(counters["stats"])
    suite.results["compile_blocks"] = {
        "blocks": n, "first_call_s": first, "batch1_first_call_s": second_shape, "ms": med,
        "dynamo_stats_after_first": frames_after_first, "dynamo_stats_after_timing": steady,
        "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default (/tmp/torchinductor_<user>)"),
        **diff(out, plain)}


def run_suite(args, gpu) -> dict:
    """All sections in order of importance, each only if the budget allows; returns the results."""
    suite = Suite(args, gpu)
    suite.results.update(device=gpu.device_name(), torch=torch.__version__, peak_tflops=gpu.peak_tflops(),
                         triton=_version("triton"), diffusers=_version("diffusers"),
                         sageattention=_version("sageattention"), tiny=args.tiny)
    suite.save()
    dtypes = [torch.float32] if args.tiny else [torch.float16, torch.bfloat16]
    for i, dtype in enumerate(dtypes):
        # levers in the first dtype only (fp16), the plain comparison in both
        suite.section(f"step_{dtype}".replace("torch.", ""), lambda d=dtype, i=i: step_and_levers(suite, d, i == 0),
                      need_s=args.need["step"])
    suite.section("fp8_layer_error", lambda: fp8_layer_error(suite), need_s=5)
    suite.section("base_run_plain", lambda: base_run(suite, ""), need_s=args.need["base"])
    if args.levers:
        suite.section("base_run_levers", lambda: base_run(suite, args.levers), need_s=args.need["base"])
    suite.section("refine", lambda: refine(suite, args.levers), need_s=args.need["refine"])
    suite.section("long_video_memory", lambda: long_video_memory(suite), need_s=args.need["long_video"])
    suite.section("comfyui", lambda: comfyui_path(suite, args.levers), need_s=args.need["comfyui"])
    suite.section("compile_blocks", lambda: compile_blocks(suite), need_s=args.need["compile"])
    suite.section("attention_flex", lambda: flex(suite), need_s=args.need["flex"])
    suite.save()
    return suite.results


def _version(name: str) -> str | None:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return version(name)
    return None


def print_suite(results: dict) -> None:
    """The table of a suite run."""
    print(f"\n== suite: {results.get('device')}  torch {results.get('torch')}  triton {results.get('triton')}  "
          f"diffusers {results.get('diffusers')}  elapsed {results.get('elapsed_s', 0):.0f} s "
          f"(budget {results.get('budget_s')} s)")
    for key, row in results.items():
        if key.startswith("step_"):
            print(f"{key}: ours {row['ours_ms']:.1f} ms, diffusers {row['diffusers_ms']:.1f} ms, speedup "
                  f"{row['speedup']:.2f}x (target 1.5x), {row['tflops_ours']:.0f} TFLOP/s"
                  + (f" = {row['fraction_of_peak']:.0%} of peak (target 55%)" if row.get("fraction_of_peak") else "")
                  + f"; TFLOP ours {row['tflop_ours']:.1f} / diffusers {row['tflop_diffusers']:.1f}; "
                  f"max|ours-diffusers| {row['vs_diffusers_max_abs_diff']:.2e}")
        if key.startswith("levers_"):
            plain = row["plain"]["ms"]
            print(f"{key} (plain {plain:.1f} ms):")
            for label, e in row.items():
                if label == "plain":
                    continue
                if "ms" in e:
                    print(f"  {label:34s} {e['ms']:9.1f} ms  x{plain / e['ms']:.2f}  max|d| {e['max_abs_diff']:.2e}"
                          f"  rel {e['rel_max_diff']:.2e}")
                else:
                    print(f"  {label:34s} {e.get('skipped') or e.get('error')}")
    for key in results:
        if key.startswith(("base_run", "refine_step", "long_video_memory", "comfyui", "attention_flex", "compile_blocks",
                           "fp8_layer_error")):
            print(key, json.dumps(results[key], default=str))
    for key, why in results.get("skipped", {}).items():
        print(f"skipped {key}: {why}")
    print("section seconds:", {k: round(v, 1) for k, v in results.get("sections_s", {}).items()})

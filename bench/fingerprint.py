"""Fingerprints of the core's outputs on CPU: one SHA-256 per output, to show a change left every number unchanged.

    python bench/fingerprint.py > after.txt
    python bench/fingerprint.py --core ../before-checkout > before.txt    # a checkout from before the change
    diff before.txt after.txt                                              # nothing printed = bit-identical

Covers the UNet of every variant (plain, FreeU, each attention backend that runs on CPU, the unfused projections,
the fused kernels, channels_last, emulated fp8), checkpoint export in every layout and loading back, both pipeline
stages, the schedules and samplers, image preprocessing, long-video windows and colour matching, previews, the memory
estimate and the text cleaning. Seeds are fixed; nothing is downloaded. ``--core`` accepts a checkout laid out before
the core was grouped into subpackages (it looks each module up under its old name too), which is what the
reorganisation was checked against.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import tempfile
from pathlib import Path

# (module now, module in the flat layout before the subpackages)
MODULES = {
    "schedules": ("diffusion.schedules", "schedules"),
    "samplers": ("diffusion.samplers", "sampling"),
    "pipeline": ("diffusion.pipeline", "pipeline"),
    "preprocess": ("video.preprocess", "preprocess"),
    "long_video": ("video.long_video", "long_video"),
    "preview": ("video.preview", "preview"),
    "frames": ("video.frames", "frames"),
    "layouts": ("weights.layouts", "checkpoint"),
    "memory": ("memory", "memory"),
    "text": ("text", "text"),
}


def core_module(key: str):
    """A core module by its role, under its current name or its name in the flat layout."""
    for name in MODULES[key]:
        try:
            return importlib.import_module(f"i2vgen_core.{name}")
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(f"no module for {key!r} under {MODULES[key]}")


def lever(unet, name: str, *args, **kwargs):
    """Switch a speed lever: ``speed.levers.set_<name>(unet, ...)`` now, ``unet.set_<name>(...)`` before."""
    try:
        levers = importlib.import_module("i2vgen_core.speed.levers")
        return getattr(levers, f"set_{name}")(unet, *args, **kwargs)
    except ModuleNotFoundError:
        return getattr(unet, f"set_{name}")(*args, **kwargs)


def digest(value) -> str:
    """SHA-256 of a tensor (dtype, shape and bytes), a structure of tensors, or anything JSON can write."""
    import torch  # noqa: PLC0415

    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(f"K{k}".encode())
                feed(v[k])
        elif isinstance(v, (list, tuple)):
            h.update(f"L{len(v)}".encode())
            for item in v:
                feed(item)
        else:
            h.update(json.dumps(v, sort_keys=True, default=repr).encode())

    feed(value)
    return h.hexdigest()[:24]


def fingerprints() -> dict[str, str]:
    """Every covered output's digest, by name."""
    import torch  # noqa: PLC0415

    from i2vgen_core import export_state_dict, load_unet  # noqa: PLC0415

    torch.use_deterministic_algorithms(True)
    out: dict[str, str] = {}

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
    from helpers import inputs_for, random_unet  # noqa: PLC0415 - the tests' tiny models, on the chosen core

    def unet_for(variant: str, seed: int = 0):
        return random_unet(variant, seed)

    def inputs(unet):
        return inputs_for(unet, batch=2, frames=3, h=10, w=16, seed=1)

    variants = ("i2vgen_xl", "ms_image2video", "ms_vid2vid_xl")
    with torch.no_grad():
        for variant in variants:
            x, t, kw = inputs(unet_for(variant))
            out[f"unet/{variant}/plain"] = digest(unet_for(variant)(x, t, **kw))
            unet = unet_for(variant)
            unet.enable_freeu(1.5, 1.6, 0.9, 0.2)
            out[f"unet/{variant}/freeu"] = digest(unet(x, t, **kw))
            for backend in ("sdpa", "chunked", "bmm", "flex"):
                unet = unet_for(variant)
                try:
                    unet.set_attention_backend(backend)
                    out[f"unet/{variant}/attention-{backend}"] = digest(unet(x, t, **kw))
                except Exception as err:  # noqa: BLE001 - a backend missing on CPU is recorded, not fatal
                    out[f"unet/{variant}/attention-{backend}"] = f"unavailable: {type(err).__name__}"
            for name, args in (("fused_projections", (False,)), ("fused_kernels", (True,)),
                               ("channels_last", (True,))):
                unet = unet_for(variant)
                lever(unet, name, *args)
                out[f"unet/{variant}/{name}={args[0]}"] = digest(unet(x, t, **kw))
            unet = unet_for(variant)
            changed = lever(unet, "fp8_compute", "tensor", emulate=True)
            out[f"unet/{variant}/fp8-emulated"] = digest([changed, unet(x, t, **kw)])

        layouts = core_module("layouts")
        with tempfile.TemporaryDirectory() as tmp:
            from safetensors.torch import save_file  # noqa: PLC0415

            for variant in variants:
                unet = unet_for(variant)
                for fmt in ("vgen", "diffusers", "ours"):
                    try:
                        sd = export_state_dict(unet, fmt)
                    except (ValueError, KeyError) as err:
                        out[f"export/{variant}/{fmt}"] = f"refused: {err}"
                        continue
                    out[f"export/{variant}/{fmt}"] = digest(sd)
                    path = Path(tmp) / f"{variant}-{fmt}.safetensors"
                    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
                    loaded = load_unet(path)
                    x, t, kw = inputs(loaded)
                    out[f"load/{variant}/{fmt}"] = digest([loaded.variant, loaded(x, t, **kw)])
                out[f"layouts/{variant}/describe"] = digest(layouts.describe(export_state_dict(unet, "vgen")))

        schedules, samplers, pipeline = core_module("schedules"), core_module("samplers"), core_module("pipeline")
        for variant in variants:
            name = schedules.schedule_for_variant(variant)
            out[f"schedule/{variant}"] = digest([name, schedules.alphas_cumprod(name)])
        for steps in (1, 7, 25, 50):
            out[f"ddim_timesteps/{steps}"] = digest(samplers.ddim_timesteps(steps))

        base = unet_for("i2vgen_xl")
        g = torch.Generator().manual_seed(3)
        text, neg = torch.randn(1, 77, 1024, generator=g), torch.randn(1, 77, 1024, generator=g)
        emb, lat = torch.randn(1, 1024, generator=g), torch.randn(1, 4, 10, 16, generator=g)
        for steps, eta in ((4, 0.0), (3, 1.0)):
            video = pipeline.run_base_stage(base, text=text, negative_text=neg, image_embedding=emb, image_latent=lat,
                                            fps=8, num_frames=3, steps=steps, eta=eta,
                                            generator=torch.Generator().manual_seed(5))
            out[f"pipeline/base/steps={steps},eta={eta}"] = digest(video)
        refine = unet_for("ms_vid2vid_xl")
        for method in ("dpmpp_2m_sde", "ddim", "heun"):
            try:
                video = pipeline.run_refine_stage(refine, torch.randn(1, 4, 3, 10, 16, generator=g), text=text,
                                                  negative_text=neg, steps=4, method=method,
                                                  generator=torch.Generator().manual_seed(6))
                out[f"pipeline/refine/{method}"] = digest(video)
            except ValueError as err:
                out[f"pipeline/refine/{method}"] = f"refused: {err}"

        pre = core_module("preprocess")
        img = torch.rand(1, 37, 53, 3, generator=g)
        for kind in ("bilinear", "bicubic", "lanczos", "box"):
            try:
                out[f"preprocess/pil_resize/{kind}"] = digest(pre.pil_resize(img, 24, 16, kind))
            except (ValueError, KeyError) as err:
                out[f"preprocess/pil_resize/{kind}"] = f"refused: {err}"
        out["preprocess/cover_resize_box"] = digest(pre.cover_resize_box(img, 32, 16))
        out["preprocess/clip_image_input"] = digest(pre.clip_image_input(img))
        out["preprocess/resize_video_bilinear"] = digest(pre.resize_video_bilinear(torch.rand(4, 20, 30, 3,
                                                                                             generator=g), 16, 12))

        lv = core_module("long_video")
        plan = lv.window_plan(40, 16, 4)
        clip, ref = torch.rand(1, 4, 5, 6, 6, generator=g), torch.rand(1, 4, 5, 6, 6, generator=g)
        out["long_video/plan"] = digest([plan, lv.blend_weights(plan, 40), lv.extended_length(16, 16, 3)])
        out["long_video/match_color"] = digest([lv.match_color(clip, ref), lv.match_color_ramped(clip, ref),
                                                lv.mean_color_drift(clip, ref)])
        prev = core_module("preview")
        frames = torch.rand(7, 40, 60, 3, generator=g)
        out["preview"] = digest([prev.sheet_grid(7), prev.latent_to_rgb(torch.randn(4, 5, 6, 6, generator=g)),
                                 prev.fit_frames(frames, 32), prev.sprite_sheet(frames * 2 - 1, 32)])
        fr = core_module("frames")
        out["frames"] = digest([fr.image_latent_frame(torch.randn(1, 4, 3, 4, 4, generator=g)),
                                fr.resample_frames(torch.randn(1, 4, 3, 4, 4, generator=g), 7)])

    mem = core_module("memory")
    estimates = []
    for variant in variants:
        for w, h, f in ((1280, 704, 16), (448, 256, 16), (1280, 720, 32)):
            e = mem.estimate_run(variant, w, h, f)
            estimates.append([variant, w, h, f, repr(e), mem.describe(e)])
    out["memory/estimates"] = digest(estimates)
    txt = core_module("text")
    prompts = ["A  <b>cat</b> &amp; dog\n", "Ünïcödé — text", "   "]
    out["text/clean"] = digest([txt.clean_prompt(p) for p in prompts])
    return out


def main(argv: list[str] | None = None) -> int:
    """Print ``name  digest`` lines, sorted by name."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--core", type=Path, help="a checkout whose i2vgen_core to fingerprint (default: this one)")
    args = ap.parse_args(argv)
    root = (args.core or Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(root))
    # an editable install of another checkout resolves i2vgen_core.* by name, past the chosen package's own folder
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                        and "__editable__" not in getattr(type(f), "__module__", "")]
    for name in [m for m in sys.modules if m == "i2vgen_core" or m.startswith("i2vgen_core.")]:
        del sys.modules[name]
    import i2vgen_core  # noqa: PLC0415

    if Path(i2vgen_core.__file__).resolve().parent != root / "i2vgen_core":
        raise SystemExit(f"imported i2vgen_core from {i2vgen_core.__file__}, not from {root}")
    results = fingerprints()
    for name in sorted(results):
        print(f"{name}  {results[name]}")
    print(f"{len(results)} outputs from {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

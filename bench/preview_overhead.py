"""Cost of the animated every-frame preview on sampling, in ComfyUI's own sampling loop (CPU).

Run with ComfyUI's Python:

    COMFYUI_PATH=/path/to/ComfyUI /path/to/ComfyUI/python bench/preview_overhead.py [--frames 16 --size 32 --steps 10 --repeats 7]
    python bench/preview_overhead.py --micro     # only the per-step cost of the preview work, no ComfyUI needed

A tiny random I2VGen-XL UNet (the demo weights' configuration) samples a [1, 4, F, size, size] latent with
``comfy.sample.sample`` and ``latent_preview.prepare_callback``, exactly as I2VGen-XL Sampler and KSampler do, in
three modes, interleaved, ``repeats`` times each:

* ``none``     -- ``--preview-method none``: no previews at all;
* ``core``     -- ComfyUI's latent2rgb previewer (frame 0 only): what a client without the setting gets;
* ``animated`` -- this pack's previewer: every frame as one sprite sheet per step (nodes/preview.py).

A stand-in PromptServer receives what would go to the browser; a second thread encodes the images to JPEG as
ComfyUI's event-loop thread does (quality 95), so the encoding competes for the CPU as in the server. Prints medians
and the ratios animated/core and animated/none (the bound the pack holds itself to: at most 1.02), in wall time and in CPU time of the
process (all threads; far less sensitive than wall time to other programs on a shared machine).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from comfy_env import conds, setup, tiny_patcher  # noqa: E402


class StandInServer:
    """What nodes/preview.py and the progress hook talk to: send_sync into a queue, JPEG-encoded on another thread."""

    def __init__(self):
        self.client_id = "bench"
        self.last_node_id = "3"
        self.last_prompt_id = "bench"
        self.sockets_metadata = {"bench": {"feature_flags": {"supports_preview_metadata": True}}}
        self.messages: queue.Queue = queue.Queue()
        self.images = 0
        self.events = 0
        self.bytes = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def send_sync(self, event, data, sid=None):
        self.messages.put((event, data))

    def _loop(self):
        while True:
            event, data = self.messages.get()
            if event is None:
                self.messages.task_done()
                return
            image = None
            if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], tuple):
                image = data[0]  # (("JPEG", PIL image, max size), metadata)
            elif isinstance(data, tuple) and len(data) == 3:
                image = data  # ("JPEG", PIL image, max size) from the progress hook
            if image is not None:
                from PIL import ImageOps

                pil = image[1] if image[2] is None else ImageOps.contain(image[1], (image[2], image[2]))
                buf = io.BytesIO()
                pil.save(buf, format="JPEG", quality=95)
                self.images += 1
                self.bytes += buf.tell()
            else:
                json.dumps(data)
                self.events += 1
            self.messages.task_done()

    def drain(self):
        self.messages.join()


def micro() -> dict:
    """Per-step cost of the preview work alone, one thread, best of 5 x 50 calls (needs no ComfyUI): the sampling
    thread's part (latent -> RGB -> uint8 image) for ComfyUI's frame-0 preview and for the sheet of every frame,
    and the JPEG encoding that ComfyUI's event-loop thread does."""
    import torch
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from i2vgen_core.video.preview import SD_LATENT_RGB_FACTORS, latent_to_rgb, sprite_sheet

    torch.set_num_threads(1)
    weight = torch.tensor(SD_LATENT_RGB_FACTORS).transpose(0, 1)
    out = {}
    for shape in ((4, 16, 8, 8), (4, 16, 88, 160), (4, 32, 90, 160)):
        x = torch.randn(1, *shape)
        images = {}

        def core():
            rgb = torch.nn.functional.linear(x[0, :, 0].movedim(0, -1), weight)
            images["core"] = Image.fromarray(((rgb + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).numpy())

        def animated():
            images["animated"] = Image.fromarray(sprite_sheet(latent_to_rgb(x[0]))[0].numpy())

        def best_ms(fn) -> float:
            best = float("inf")
            for _ in range(5):
                t = time.thread_time()
                for _ in range(50):
                    fn()
                best = min(best, (time.thread_time() - t) / 50 * 1000)
            return best

        row = {"core_ms": best_ms(core), "animated_ms": best_ms(animated)}
        for name in ("core", "animated"):
            image = images[name]
            if name == "core":  # ComfyUI fits its preview into --preview-size (512) before encoding
                from PIL import ImageOps
                image = ImageOps.contain(image, (512, 512))
            row[f"{name}_jpeg_ms"] = best_ms(lambda: image.save(io.BytesIO(), format="JPEG", quality=95))
            row[f"{name}_image"] = list(image.size)
        out["x".join(map(str, shape[1:]))] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI folder ($COMFYUI_PATH)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=32, help="latent height and width (pixels / 8)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--per-call-only", action="store_true", help="only the per-step cost of each previewer")
    ap.add_argument("--micro", action="store_true", help="only the per-step cost of the preview work (no ComfyUI)")
    args = ap.parse_args(argv)
    if args.micro:
        print(json.dumps(micro(), indent=1))
        return 0
    if not args.comfyui:
        ap.error("set COMFYUI_PATH or pass --comfyui")
    setup(args.comfyui)

    import torch
    import comfy.sample
    import comfy.utils
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod
    from i2vgen_pkg.nodes import preview

    torch.set_num_threads(args.threads)
    stand_in = StandInServer()
    # nodes/preview.py finds the server as server.PromptServer.instance; a stand-in module (no aiohttp app)
    sys.modules["server"] = type(sys)("server")
    sys.modules["server"].PromptServer = type("PromptServer", (), {"instance": stand_in})

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        if preview_image is not None:
            stand_in.send_sync(2, preview_image)  # main.py: UNENCODED_PREVIEW_IMAGE

    comfy.utils.set_progress_bar_global_hook(hook)
    assert getattr(latent_preview.get_previewer, "_i2vgen_animated", False), "the preview hook is not installed"

    patcher = tiny_patcher("i2vgen_xl", seed=0)
    model = patcher.model
    h = w = args.size
    pos, neg = conds(h, w, seed=0)
    g = torch.Generator().manual_seed(1)  # random latents for the per-call costs below
    latent = torch.zeros(1, 4, args.frames, h, w)
    noise = comfy.sample.prepare_noise(latent, 0)

    cpu: dict[str, list[float]] = {m: [] for m in ("none", "core", "animated")}

    def run(mode: str) -> float:
        comfy.cli_args.args.preview_method = (LatentPreviewMethod.NoPreviews if mode == "none"
                                              else LatentPreviewMethod.Latent2RGB)
        preview.SETTINGS.set("bench", mode == "animated")
        stand_in.drain()
        start, start_cpu = time.perf_counter(), time.process_time()
        callback = latent_preview.prepare_callback(patcher, args.steps)
        comfy.sample.sample(patcher, noise, args.steps, 9.0, "ddim", "ddim_uniform", pos, neg, latent, seed=0,
                            callback=callback, disable_pbar=True)
        stand_in.drain()  # the images are encoded before the run counts as done
        cpu[mode].append(time.process_time() - start_cpu)  # CPU seconds of all threads: robust on a busy machine
        return time.perf_counter() - start

    # per-step cost of each previewer at the real sizes (sampling thread: latent -> image; loop thread: JPEG)
    per_call = {}
    calls = 20
    for shape in ((1, 4, args.frames, h, w), (1, 4, 16, 88, 160), (1, 4, 32, 90, 160)):
        x0 = torch.randn(*shape, generator=g)
        for mode in ("core", "animated"):
            preview.SETTINGS.set("bench", mode == "animated")
            comfy.cli_args.args.preview_method = LatentPreviewMethod.Latent2RGB
            previewer = latent_preview.get_previewer(torch.device("cpu"), model.latent_format)
            stand_in.drain()
            t_cpu, t_wall = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                out = previewer.decode_latent_to_preview_image("JPEG", x0)
                if out is not None:
                    stand_in.send_sync(2, out)
            sampling_ms = (time.thread_time() - t_cpu) / calls * 1000
            stand_in.drain()
            per_call[f"{mode} {'x'.join(map(str, shape[2:]))}"] = {
                "sampling_thread_cpu_ms": sampling_ms,
                "wall_ms_incl_jpeg": (time.perf_counter() - t_wall) / calls * 1000}
    print(json.dumps(per_call, indent=1), flush=True)
    if args.per_call_only:
        return 0

    modes = ("none", "core", "animated")
    run("animated")  # warm-up (first model load, allocator)
    images_before = stand_in.images
    run("animated")
    sheets_per_run = stand_in.images - images_before
    for values in cpu.values():
        values.clear()
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            times[mode].append(run(mode))
            print(f"repeat {r + 1}/{args.repeats} {mode:8s} {times[mode][-1]:.3f}s wall, {cpu[mode][-1]:.3f}s CPU",
                  flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    med_cpu = {m: statistics.median(v) for m, v in cpu.items()}
    result = {
        "frames": args.frames, "latent": [h, w], "steps": args.steps, "repeats": args.repeats,
        "threads": args.threads, "torch": torch.__version__, "median_s": med,
        "all_s": times, "sheets_per_run": sheets_per_run,
        "ratio_animated_vs_core": med["animated"] / med["core"],
        "ratio_animated_vs_none": med["animated"] / med["none"],
        "min_s": {m: min(v) for m, v in times.items()},
        "min_ratio_animated_vs_core": min(times["animated"]) / min(times["core"]),
        "min_ratio_animated_vs_none": min(times["animated"]) / min(times["none"]),
        # each repeat runs the three modes back to back: ratios within a repeat cancel slow drifts of the load
        "paired_median_animated_vs_core": statistics.median(a / c for a, c in zip(times["animated"], times["core"])),
        "paired_median_animated_vs_none": statistics.median(a / n for a, n in zip(times["animated"], times["none"])),
        "per_call": per_call, "median_cpu_s": med_cpu, "all_cpu_s": cpu,
        "cpu_ratio_animated_vs_core": med_cpu["animated"] / med_cpu["core"],
        "cpu_ratio_animated_vs_none": med_cpu["animated"] / med_cpu["none"],
    }
    print(json.dumps(result, indent=1))
    print(f"\nmedians over {args.repeats} runs of {args.steps} steps, {args.frames} frames at {h}x{w} latent: "
          f"none {med['none']:.3f}s, core (frame 0) {med['core']:.3f}s, animated (all frames) {med['animated']:.3f}s"
          f"\nanimated/core = {result['ratio_animated_vs_core']:.4f}, animated/none = "
          f"{result['ratio_animated_vs_none']:.4f} (wall); CPU time: animated/core = "
          f"{result['cpu_ratio_animated_vs_core']:.4f}, animated/none = {result['cpu_ratio_animated_vs_none']:.4f}; "
          f"{sheets_per_run} sheets per run\nminimum wall: animated/core = {result['min_ratio_animated_vs_core']:.4f}, "
          f"animated/none = {result['min_ratio_animated_vs_none']:.4f}; median of per-repeat ratios: animated/core = "
          f"{result['paired_median_animated_vs_core']:.4f}, animated/none = "
          f"{result['paired_median_animated_vs_none']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ModelScope's MS-Image2Video pipeline (``modelscope`` on PyPI, ``ImageToVideoPipeline`` + ``ImageToVideo``) on
random full-size weights, on the CPU, with every stage recorded; the other half of test_ms_end_to_end.py.

Run in ComfyUI's Python (it has torchvision; ``modelscope``, ``open_clip_torch==2.0.2``, ``easydict``, ``addict``
installed there with ``--no-deps``), never imported by the test process:

    ms_inference.py make  DIR SETTINGS_JSON        # a model folder as the hub's (configuration.json, random weights)
                                                   # and a test image
    ms_inference.py infer DIR IMAGE OUT.pt SETTINGS_JSON

``make`` writes the folder ``ImageToVideo`` reads: ``configuration.json`` (the hub's keys; latent size, frame count
and fps from the settings, which is how the pipeline is sized), the UNet checkpoint (ModelScope's ``Img2VidSDUNet``
with the model's configuration, random; the layers it initialises to zero drawn at random too),
``open_clip_pytorch_model.bin`` (open_clip's ViT-H-14) and ``v2-1_512-ema-pruned.ckpt`` (ModelScope's
``AutoencoderKL`` under ``first_stage_model.``), every value representable in fp16.

``infer`` calls the pipeline as its docstring shows (``pipeline(image_path, output_video=...)``). What is replaced:
the GPU-only imports of the UNet file (xformers' attention as PyTorch's SDPA, fairscale's checkpoint wrapper as the
identity, an unused rotary class), ``cv2`` (only to write PNG frames for ffmpeg: the stand-in records them),
``modelscope.msdatasets`` (the pipeline base class imports it, and HuggingFace datasets with it, for an isinstance
check on the input), and one import the published package gets wrong (it imports ``utils.schedule``; the file it
ships is ``utils/shedule.py``).
``build_noise`` runs after ``torch.manual_seed(seed)``: the pipeline draws its start noise from the global RNG after
its models' initialisers consumed it, so only reseeded is it the noise a seed names elsewhere. Autocast is CUDA's,
so on the CPU the pipeline computes in fp32.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parents[1] / "support"))  # reference_models: the GPU-import stand-ins
sys.path.insert(0, str(HERE))
from vgen_inference import (_fp16_values, record_ddim, record_decode, write_random_open_clip,  # noqa: E402
                            write_test_image)

PKG = "modelscope.models.multi_modal.image_to_video"
UNET_FILE = "base_03_alldata_fps_v_80g_0789000.pth"
CLIP_FILE = "open_clip_pytorch_model.bin"
VAE_FILE = "v2-1_512-ema-pruned.ckpt"
IMAGE_FILE = "ms_e2e_image.png"  # beside the weights (ImageToVideo reads only the files its configuration names)


def _imports() -> None:
    """The stand-ins, and the schedule module under the name the model file imports."""
    import importlib

    from reference_models import gpu_import_stubs

    sys.modules.update(gpu_import_stubs())
    frames = []
    cv2 = types.ModuleType("cv2")
    cv2.IMWRITE_JPEG_QUALITY = 1
    cv2.imwrite = lambda path, image, *args: frames.append(image[:, :, ::-1].copy()) or True
    cv2.recorded = frames
    sys.modules["cv2"] = cv2
    sys.modules[f"{PKG}.utils.schedule"] = importlib.import_module(f"{PKG}.utils.shedule")
    # the pipeline base class imports its dataset class (and through it HuggingFace datasets) for one isinstance
    # check on the input; a path is not one
    datasets = types.ModuleType("modelscope.msdatasets")
    datasets.MsDataset = type("MsDataset", (), {})
    sys.modules["modelscope.msdatasets"] = datasets


def configuration(settings: dict) -> dict:
    """configuration.json of the model folder."""
    return {
        "framework": "pytorch", "task": "image-to-video",
        "model": {"type": "image-to-video-model",
                  "model_args": {"ckpt_clip": CLIP_FILE, "ckpt_unet": UNET_FILE, "ckpt_autoencoder": VAE_FILE,
                                 "seed": settings["seed"]},
                  "model_cfg": {"batch_size": 1, "target_fps": settings["fps"], "max_frames": settings["frames"],
                                "latent_hei": settings["height"] // 8, "latent_wid": settings["width"] // 8}},
        "pipeline": {"type": "image-to-video-task-pipeline"},
    }


def make(out: Path, settings: dict) -> None:
    """The model folder, random weights (kept if present)."""
    import importlib

    import torch

    _imports()
    out.mkdir(parents=True, exist_ok=True)
    (out / "configuration.json").write_text(json.dumps(configuration(settings), indent=2))
    cfg = importlib.import_module(f"{PKG}.utils.config").cfg
    modules = importlib.import_module(f"{PKG}.modules")
    if not (out / UNET_FILE).exists():
        torch.manual_seed(10)
        unet_cfg = dict(cfg.UNet)
        unet_cfg.pop("type")
        unet = modules.Img2VidSDUNet(**unet_cfg).eval().requires_grad_(False)
        for p in unet.parameters():
            if not p.any():
                p.normal_(0, 0.02)
        _fp16_values(unet)
        torch.save({"state_dict": {k: v.half() for k, v in unet.state_dict().items()}}, out / UNET_FILE)
        del unet
    if not (out / CLIP_FILE).exists():
        write_random_open_clip(out / CLIP_FILE, seed=11)
    if not (out / VAE_FILE).exists():
        ae_cfg = dict(cfg.auto_encoder)
        ae_cfg.pop("pretrained", None)
        ae_cfg.pop("type", None)
        torch.manual_seed(12)
        vae = modules.AutoencoderKL(**ae_cfg).eval()
        _fp16_values(vae)
        torch.save({"state_dict": {"first_stage_model." + k: v.half() for k, v in vae.state_dict().items()}},
                   out / VAE_FILE)
    if not (out / IMAGE_FILE).exists():
        write_test_image(out / IMAGE_FILE)


def infer(model_dir: Path, image: Path, out: Path, settings: dict) -> None:
    """ModelScope's pipeline on the folder and the image; the record goes to `out` (torch.save)."""
    import importlib

    import torch

    _imports()
    torch.set_grad_enabled(False)
    record: dict = {"unet_calls": []}
    seed = int(settings["seed"])
    model_module = importlib.import_module(f"{PKG}.image_to_video_model")
    modules = importlib.import_module(f"{PKG}.modules")
    diffusion = importlib.import_module(f"{PKG}.utils.diffusion")
    from modelscope.pipelines.multi_modal.image_to_video_pipeline import ImageToVideoPipeline

    build_noise = model_module.ImageToVideo.build_noise

    def seeded_noise(self):
        torch.manual_seed(seed)
        return build_noise(self)

    model_module.ImageToVideo.build_noise = seeded_noise

    embed = modules.FrozenOpenCLIPVisualEmbedder.forward

    def recorded_embed(self, image):
        z = embed(self, image)
        record["clip_pixels"], record["image_embedding"] = image.clone(), z.clone()
        return z

    modules.FrozenOpenCLIPVisualEmbedder.forward = recorded_embed

    unet_forward = modules.Img2VidSDUNet.forward

    def recorded_unet(self, x, t, y=None, fps=None, **kwargs):
        output = unet_forward(self, x, t, y=y, fps=fps, **kwargs)
        branch = "cond" if y is not None and bool(y.any()) else "uncond"
        record["unet_calls"].append({"t": t.clone(), "branch": branch, "x": x.clone(), "out": output.clone()})
        return output

    modules.Img2VidSDUNet.forward = recorded_unet

    record_ddim(diffusion.GaussianDiffusion, record)
    record_decode(modules.AutoencoderKL, record)

    model = model_module.ImageToVideo(str(model_dir), device="cpu")
    pipe = ImageToVideoPipeline(model=model, device="cpu")
    pipe(str(image), output_video=str(out.parent / "ms_video.mp4"))
    record["frames_written"] = torch.stack([torch.from_numpy(f) for f in sys.modules["cv2"].recorded])
    record["config"] = {"guide_scale": model.cfg.guide_scale, "ddim_timesteps": model.cfg.ddim_timesteps,
                        "target_fps": model.cfg.target_fps, "noise_strength": model.cfg.noise_strength,
                        "scale_factor": model.cfg.scale_factor, "resolution": list(model.cfg.resolution)}
    torch.save(record, out)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "make":
        make(Path(argv[1]), json.loads(argv[2]))
        return 0
    if len(argv) >= 5 and argv[0] == "infer":
        infer(Path(argv[1]), Path(argv[2]), Path(argv[3]), json.loads(argv[4]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""VGen's own I2VGen-XL inference (github.com/ali-vilab/VGen, the paper's release) on random full-size weights, on the
CPU, with every stage recorded; the other half of test_vgen_end_to_end.py.

Run in ComfyUI's Python (it has torchvision; open_clip_torch and easydict must be installed there too: VGen needs
them), never imported by the test process:

    vgen_inference.py make  VGEN_PATH DIR           # random weights in the release's own file formats + an image
    vgen_inference.py infer VGEN_PATH DIR OUT.pt JSON_SETTINGS

``make`` writes what VGen's README tells a user to download, with random weights at the real architecture:
``i2vgen_xl_00854500.pth`` (VGen's ``UNetSD_I2VGen``, 1.42 B parameters; the layers VGen initialises to zero drawn
at random too), ``open_clip_pytorch_model.bin`` (open_clip's ViT-H-14, both towers) and ``v2-1_512-ema-pruned.ckpt``
(VGen's ``AutoencoderKL`` under ``first_stage_model.``), each value representable in fp16 so the pack's fp16 files
hold the same numbers, and a test image.

``infer`` runs VGen's ``inference_i2vgen_entrance`` as ``inference.py --cfg configs/i2vgen_xl_infer.yaml`` would,
with the config's keys for the files, a small size, the frame count, steps and ``debug`` (one process, no
DistributedDataParallel) changed. What is replaced, and why:

- CUDA: ``.cuda()`` is the identity and device ``0`` / ``'cuda'`` mean the CPU (this machine has no GPU); autocast is
  off (``use_fp16: False``), so VGen computes in fp32 as the pack does on the CPU.
- imports VGen needs only on a GPU (xformers' attention as PyTorch's SDPA, fairscale's checkpoint wrapper as the
  identity, pynvml reporting 0 bytes) or only to write files (``cv2``, ``imageio``: the writer records the frames
  VGen's ``save_i2vgen_video_safe`` hands it, after VGen's own last-frame check).
- the two global-RNG draws (the image latent's posterior sample and the start noise) are preceded by
  ``torch.manual_seed(seed)``: VGen draws them after its model initialisers consumed the generator, so a seed there
  names no reproducible noise elsewhere; reseeded, they are the numbers the pack's seeded nodes draw (the entrance
  has that ``torch.manual_seed`` line, commented out, before the noise).

Everything else is VGen's code as it is. The record (a dict of tensors) holds the token ids, text and image
embeddings, the CLIP and VAE inputs, the image latent, the noise, each UNet call (timestep, branch, input, output),
each DDIM step (the guided x0 and the next latent), the final latent, the decoded frames and the written frames.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parents[1] / "support"))  # reference_models: the GPU-import stand-ins

UNET_FILE = "i2vgen_xl_00854500.pth"
CLIP_FILE = "open_clip_pytorch_model.bin"
VAE_FILE = "v2-1_512-ema-pruned.ckpt"
IMAGE_FILE = "vgen_e2e_image.png"


def _vgen_imports(vgen: Path) -> None:
    """Make VGen's ``tools``/``utils`` importable without its package ``__init__`` files (they import every model
    and dataset VGen has, and their dependencies), with the stand-ins above in ``sys.modules``."""
    import torch
    from reference_models import gpu_import_stubs

    sys.path.insert(0, str(vgen))
    sys.modules.update(gpu_import_stubs())

    class _Memory:
        used = 0

    pynvml = types.ModuleType("pynvml")
    pynvml.nvmlInit = lambda: None
    pynvml.nvmlDeviceGetHandleByIndex = lambda index: index
    pynvml.nvmlDeviceGetMemoryInfo = lambda handle: _Memory()
    sys.modules["pynvml"] = pynvml
    for name in ("cv2", "imageio", "requests"):
        sys.modules.setdefault(name, types.ModuleType(name))
    for package in ("tools", "tools.modules", "tools.modules.unet", "tools.modules.diffusions", "tools.inferences"):
        module = types.ModuleType(package)
        module.__path__ = [str(vgen / package.replace(".", "/"))]
        sys.modules[package] = module
    _ = torch


def _fp16_values(module) -> None:
    """Round every parameter and buffer to a value fp16 holds (the pack's files are fp16)."""
    import torch

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def make(vgen: Path, out: Path) -> None:
    """Random full-size weights in the release's formats, and a test image, under `out`."""
    import importlib

    import torch

    _vgen_imports(vgen)
    out.mkdir(parents=True, exist_ok=True)
    config = importlib.import_module("tools.modules.config").cfg
    train = _train_config(vgen)

    if not (out / UNET_FILE).exists():
        unet_module = importlib.import_module("tools.modules.unet.unet_i2vgen")
        torch.manual_seed(0)
        unet_cfg = {**config.UNet, **train["UNet"]}
        unet_cfg.pop("type")
        unet = unet_module.UNetSD_I2VGen(**unet_cfg).eval().requires_grad_(False)
        for p in unet.parameters():
            if not p.any():
                p.normal_(0, 0.02)
        _fp16_values(unet)
        torch.save({"state_dict": {k: v.half() for k, v in unet.state_dict().items()}, "step": 854500},
                   out / UNET_FILE)
        del unet

    if not (out / CLIP_FILE).exists():
        write_random_open_clip(out / CLIP_FILE, seed=1)

    if not (out / VAE_FILE).exists():
        ae_module = importlib.import_module("tools.modules.autoencoder")
        ae_cfg = dict(config.auto_encoder)
        ae_cfg.pop("type"), ae_cfg.pop("pretrained", None)
        torch.manual_seed(2)
        vae = ae_module.AutoencoderKL(**ae_cfg).eval()
        _fp16_values(vae)
        torch.save({"state_dict": {"first_stage_model." + k: v.half() for k, v in vae.state_dict().items()}},
                   out / VAE_FILE)
        del vae

    write_test_image(out / IMAGE_FILE)


def write_random_open_clip(path: Path, seed: int) -> None:
    """open_clip's ViT-H-14 (both towers) with random weights as ``open_clip_pytorch_model.bin``: its state dict,
    fp16 values."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    clip = open_clip.create_model("ViT-H-14", pretrained="").eval()
    _fp16_values(clip)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in clip.state_dict().items()}, path)


def write_test_image(path: Path) -> None:
    """A 200x150 picture: neither the video's aspect nor a multiple of 8, so both sides resize and crop it."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:150, 0:200].astype(np.float64)
    rng = np.random.default_rng(3)
    rgb = np.stack([128 + 100 * np.sin(x / 17 + y / 29), 128 + 90 * np.cos(y / 13), 60 + x / 2 * 0.8], axis=-1)
    rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)


def _train_config(vgen: Path) -> dict:
    import yaml

    return yaml.safe_load((vgen / "configs/i2vgen_xl_train.yaml").read_text())


def _cpu_for_cuda() -> None:
    """Device 0 / 'cuda' mean the CPU; ``.cuda()`` is the identity."""
    import torch

    def cpu(device):
        if isinstance(device, int) or (isinstance(device, (str, torch.device)) and str(device).startswith("cuda")):
            return torch.device("cpu")
        return device

    tensor_to, module_to, make_tensor = torch.Tensor.to, torch.nn.Module.to, torch.tensor

    def t_to(self, *args, **kwargs):
        args = tuple(cpu(a) if isinstance(a, (int, str, torch.device)) and not isinstance(a, bool) else a
                     for a in args)
        if "device" in kwargs:
            kwargs["device"] = cpu(kwargs["device"])
        return tensor_to(self, *args, **kwargs)

    def m_to(self, *args, **kwargs):
        args = tuple(cpu(a) if isinstance(a, (int, str, torch.device)) and not isinstance(a, bool) else a
                     for a in args)
        if "device" in kwargs:
            kwargs["device"] = cpu(kwargs["device"])
        return module_to(self, *args, **kwargs)

    def tensor(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = cpu(kwargs["device"])
        return make_tensor(*args, **kwargs)

    torch.Tensor.to, torch.nn.Module.to, torch.tensor = t_to, m_to, tensor
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self


def record_ddim(diffusion_class, record: dict) -> None:
    """Wrap an original's DDIM (VGen's ``DiffusionDDIM``, ModelScope's ``GaussianDiffusion``: the same loop) so that
    `record` gets the loop's start ``noise``, each step's ``steps`` entry (t, guided x0, next latent) and the
    ``final_latent``."""
    ddim_sample, ddim_loop = diffusion_class.ddim_sample, diffusion_class.ddim_sample_loop
    record["steps"] = []

    def recorded_step(self, xt, t, *args, **kwargs):
        xt_1, x0 = ddim_sample(self, xt, t, *args, **kwargs)
        record["steps"].append({"t": t.clone(), "x0": x0.clone(), "next": xt_1.clone()})
        return xt_1, x0

    def recorded_loop(self, noise, *args, **kwargs):
        record["noise"] = noise.clone()
        latent = ddim_loop(self, noise, *args, **kwargs)
        record["final_latent"] = latent.clone()
        return latent

    diffusion_class.ddim_sample, diffusion_class.ddim_sample_loop = recorded_step, recorded_loop


def record_decode(autoencoder_class, record: dict) -> None:
    """Wrap an original's ``AutoencoderKL.decode`` so that `record` holds everything it decoded, as ``decoded``
    ([frames, 3, H, W] in [-1, 1]) and as ``frames_float`` (mapped to [0, 1] as both originals' video writers do)."""
    import torch

    decode = autoencoder_class.decode

    def recorded_decode(self, z, *args, **kwargs):
        frames = decode(self, z, *args, **kwargs)
        decoded = frames.clone() if "decoded" not in record else torch.cat([record["decoded"], frames])
        record["decoded"], record["frames_float"] = decoded, (decoded * 0.5 + 0.5).clamp(0, 1)
        return frames

    autoencoder_class.decode = recorded_decode


def infer(vgen: Path, files: Path, out: Path, settings: dict) -> None:
    """VGen's inference entrance on the files `make` wrote; the record goes to `out` (torch.save)."""
    import importlib

    import torch
    import yaml

    _vgen_imports(vgen)
    _cpu_for_cuda()
    torch.set_grad_enabled(False)
    record: dict = {"tokens": {}, "text": {}, "unet_calls": [], "draws": []}
    seed = int(settings["seed"])

    # the two global-RNG draws, reseeded (see the module docstring) and recorded
    randn = torch.randn

    def seeded_randn(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple, torch.Size)) else size
        if "generator" not in kwargs and len(shape) in (4, 5) and shape[1] == 4:
            torch.manual_seed(seed)
            draw = randn(*size, **kwargs)
            record["draws"].append(draw.clone())
            return draw
        return randn(*size, **kwargs)

    torch.randn = seeded_randn

    import open_clip

    tokenize = open_clip.tokenize

    def recorded_tokenize(texts, *args, **kwargs):
        ids = tokenize(texts, *args, **kwargs)
        for text, row in zip([texts] if isinstance(texts, str) else texts, ids):
            record["tokens"][text] = row.clone()
        return ids

    open_clip.tokenize = recorded_tokenize

    embedder = importlib.import_module("tools.modules.clip_embedder")
    autoencoder = importlib.import_module("tools.modules.autoencoder")
    unet = importlib.import_module("tools.modules.unet.unet_i2vgen")
    for name in ("schedules", "losses", "diffusion_ddim"):
        importlib.import_module(f"tools.modules.diffusions.{name}")
    entrance = importlib.import_module("tools.inferences.inference_i2vgen_entrance")

    forward = embedder.FrozenOpenCLIPTextVisualEmbedder.forward

    def recorded_embed(self, image=None, text=None):
        xi, xt, x = forward(self, image=image, text=text)
        for t, row in zip([text] if isinstance(text, str) else text, x):
            record["text"][t] = row.clone()
        if image is not None:
            record["clip_pixels"], record["image_embedding"] = image.clone(), xi.clone()
        return xi, xt, x

    embedder.FrozenOpenCLIPTextVisualEmbedder.forward = recorded_embed

    encode = autoencoder.AutoencoderKL.encode_firsr_stage

    def recorded_encode(self, x, scale_factor=1.0):
        z = encode(self, x, scale_factor)
        record["vae_pixels"], record["image_latent"], record["scale_factor"] = x.clone(), z.clone(), scale_factor
        return z

    autoencoder.AutoencoderKL.encode_firsr_stage = recorded_encode

    record_decode(autoencoder.AutoencoderKL, record)

    unet_forward = unet.UNetSD_I2VGen.forward

    def recorded_unet(self, x, t, y=None, image=None, local_image=None, fps=None, **kwargs):
        output = unet_forward(self, x, t, y=y, image=image, local_image=local_image, fps=fps, **kwargs)
        branch = "cond" if image is not None and bool(image.any()) else "uncond"
        record["unet_calls"].append({"t": t.clone(), "branch": branch, "x": x.clone(), "out": output.clone(),
                                     "fps": fps.clone() if fps is not None else None})
        return output

    unet.UNetSD_I2VGen.forward = recorded_unet

    record_ddim(sys.modules["tools.modules.diffusions.diffusion_ddim"].DiffusionDDIM, record)

    written = []

    class Writer:
        def append_data(self, frame):
            written.append(torch.from_numpy(frame.copy()))

        def close(self):
            pass

    sys.modules["imageio"].get_writer = lambda *args, **kwargs: Writer()

    files = files.resolve()
    work = out.parent / "vgen_work"
    work.mkdir(parents=True, exist_ok=True)
    test_list = work / "test_list.txt"
    test_list.write_text(f"{files / IMAGE_FILE}|||{settings['prompt']}\n")
    cfg_update = yaml.safe_load((vgen / "configs/i2vgen_xl_infer.yaml").read_text())
    cfg_update.update({
        "vldm_cfg": str(vgen / "configs/i2vgen_xl_train.yaml"), "cfg_file": str(vgen / "configs/i2vgen_xl_infer.yaml"),
        "test_list_path": str(test_list), "test_model": str(files / UNET_FILE), "log_dir": str(work / "log"),
        "round": 1, "debug": True, "use_fp16": False, "seed": seed,
        "resolution": [settings["width"], settings["height"]], "max_frames": settings["frames"],
        "ddim_timesteps": settings["steps"], "guide_scale": settings["cfg"], "target_fps": settings["fps"],
        "embedder": {"pretrained": str(files / CLIP_FILE), "device": "cpu"},
        "auto_encoder": {"pretrained": str(files / VAE_FILE)},
    })
    if settings.get("negative") is not None:
        cfg_update["negative_prompt"] = settings["negative"]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    done = entrance.inference_i2vgen_entrance(cfg_update)
    record["frames_written"] = torch.stack(written) if written else None
    record["config"] = {k: done[k] for k in ("guide_scale", "ddim_timesteps", "target_fps", "max_frames",
                                             "resolution", "scale_factor", "negative_prompt", "seed", "use_zero_infer")}
    torch.save(record, out)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "make":
        make(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) >= 5 and argv[0] == "infer":
        infer(Path(argv[1]), Path(argv[2]), Path(argv[3]), json.loads(argv[4]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

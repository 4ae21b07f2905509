"""Checks of the pack's nodes against VGen's own I2VGen-XL code (github.com/ali-vilab/VGen, the paper's release),
run inside ComfyUI's Python (no server).

Usage: COMFYUI_PYTHON vgen_checks.py COMFYUI_PATH REPO DEMO_DIR VGEN_PATH [names] -> one JSON object per check.
VGen's files are executed from VGEN_PATH (a checkout; nothing of it is copied here), with its registry stubbed so only
the modules a check names are imported. Tiny random UNets only.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[2] / "support"))  # reference_models: stubs, modules_replaced
from inprocess_checks import _rel, conds, run_checks, selected, setup, tiny_patcher  # noqa: E402

CHECKS = []
VGEN = Path(".")


def check(fn):
    CHECKS.append(fn)
    return fn


@contextmanager
def _vgen_registry():
    """VGen's ``utils.registry_class`` as a stub whose registries only hand the decorated class back, for the time of
    an import (ComfyUI has a top-level ``utils`` of its own, restored afterwards)."""
    class Registry:
        def register_class(self, name=None):
            return lambda cls: cls

        register_function = register_class

    from reference_models import modules_replaced

    registry = types.ModuleType("utils.registry_class")
    for name in ("DIFFUSION", "MODEL", "EMBEDDER", "AUTO_ENCODER", "INFER_ENGINE", "DISTRIBUTION"):
        setattr(registry, name, Registry())
    package = types.ModuleType("utils")
    package.registry_class = registry
    with modules_replaced({"utils": package, "utils.registry_class": registry}):
        yield


def vgen_module(folder: str, names: tuple[str, ...]):
    """Load VGen's `folder`/<name>.py files (in order) as a throw-away package; the last module."""
    path = VGEN / folder
    package = types.ModuleType("_vgen_" + folder.replace("/", "_"))
    package.__path__ = [str(path)]
    sys.modules[package.__name__] = package
    module = None
    with _vgen_registry():
        for name in names:
            spec = importlib.util.spec_from_file_location(f"{package.__name__}.{name}", path / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
    return module


def vgen_diffusion():
    """VGen's ``DiffusionDDIM`` configured as ``configs/i2vgen_xl_train.yaml`` (cosine, zero terminal SNR, v)."""
    ddim = vgen_module("tools/modules/diffusions", ("schedules", "losses", "diffusion_ddim"))
    return ddim.DiffusionDDIM(schedule="cosine", schedule_param={"num_timesteps": 1000, "cosine_s": 0.008,
                                                                 "zero_terminal_snr": True},
                              mean_type="v", loss_type="mse", var_type="fixed_small", rescale_timesteps=False,
                              noise_strength=0.1)


def vgen_model_kwargs(pos, neg):
    """VGen's inference kwargs (``inference_i2vgen_entrance``) for the conditioning `conds` made: text ``y``, image
    embedding ``[1, 1, 1024]`` (zeros when unconditional, use_zero_infer), ``local_image`` repeated over the frames
    (scaled latent), fps."""
    import torch

    lat = pos[0][1]["i2vgen_image_latent"] * 0.18215
    local = lat.unsqueeze(2)
    fps = torch.tensor([16])
    cond = {"y": pos[0][0], "image": pos[0][1]["i2vgen_image_embedding"].unsqueeze(1), "local_image": local,
            "fps": fps}
    uncond = {"y": neg[0][0], "image": torch.zeros(1, 1, 1024), "local_image": local, "fps": fps}
    return [cond, uncond]


def vgen_call(unet):
    """The UNet with VGen's call signature ``model(x, t, y, image, local_image, fps)``."""
    import torch
    from i2vgen_pkg.i2vgen_core.network.unet import I2VGenUNet

    def model(xt, t, y=None, image=None, local_image=None, fps=None):
        with torch.no_grad():
            return I2VGenUNet.forward(unet, xt, t, text=y, image_embedding=image[:, 0],
                                      image_latent=local_image[:, :, 0], fps=fps)

    return model


@check
def schedule_equals_vgen():
    """The I2VGen-XL MODEL's alphas_cumprod == VGen's DiffusionDDIM's."""
    from i2vgen_pkg.i2vgen_core.diffusion.schedules import alphas_cumprod

    ref = vgen_diffusion().alphas_cumprod
    err = (alphas_cumprod("cosine_zero_snr") - ref).abs().max().item()
    assert err < 1e-12, err
    return {"max_abs_err": err}


@check
def sampler_node_equals_vgen_ddim_loop():
    """I2VGen-XL Sampler (ddim, ddim_uniform, cfg 9) == VGen's ddim_sample_loop with the same noise, for 10, 30 and 50
    steps (30 does not divide 1000: both visit 31 timesteps from 991), its last step to alphas_cumprod[0] as VGen's
    (final_step 'original', the default); with final_step 'clean' it equals the same loop with VGen's last step
    replaced by 1 (ComfyUI's and diffusers' ending). The figures also say what the last step is worth.
    """
    import torch
    import comfy.sample
    from i2vgen_pkg.nodes.sampling import I2VGenXLSampler

    mp = tiny_patcher("i2vgen_xl")
    h, w, f, scale, seed = 8, 8, 2, 9.0, 8888
    pos, neg = conds(h, w)
    latent = torch.zeros(1, 4, f, h, w)
    noise = comfy.sample.prepare_noise(latent, seed)
    diffusion = vgen_diffusion()
    model, kwargs = vgen_call(mp.model.diffusion_model), vgen_model_kwargs(pos, neg)
    figures = {}
    for steps in (10, 30, 50):
        runs = {final: I2VGenXLSampler().sample(mp, pos, neg, {"samples": latent}, seed, steps, scale,
                                                final_step=final)[0]["samples"] * 0.18215
                for final in ("original", "clean")}
        original = diffusion.ddim_sample_loop(noise=noise.clone(), model=model, model_kwargs=kwargs,
                                              guide_scale=scale, ddim_timesteps=steps, eta=0.0)
        table = diffusion.alphas_cumprod
        diffusion.alphas_cumprod = torch.cat([table.new_ones(1), table[1:]])  # last step to 1, as ComfyUI's
        try:
            to_one = diffusion.ddim_sample_loop(noise=noise.clone(), model=model, model_kwargs=kwargs,
                                                guide_scale=scale, ddim_timesteps=steps, eta=0.0)
        finally:
            diffusion.alphas_cumprod = table
        figures[steps] = {"node_vs_vgen": _rel(runs["original"], original),
                          "clean_vs_vgen_last_step_to_1": _rel(runs["clean"], to_one),
                          "clean_vs_vgen": _rel(runs["clean"], original)}
    # fp32 VE arithmetic (ComfyUI) vs VP (VGen): the random tiny UNet at cfg 9 amplifies rounding over 50 steps
    assert figures[10]["node_vs_vgen"] < 1e-4 and figures[10]["clean_vs_vgen_last_step_to_1"] < 1e-4, figures
    assert all(f["node_vs_vgen"] < 5e-3 and f["clean_vs_vgen_last_step_to_1"] < 5e-3 for f in figures.values()), \
        figures
    return figures


@contextmanager
def _vgen_unet_imports():
    """Stand-ins, for the time of an import and a forward, for what VGen's UNet files import but I2VGen-XL's forward
    does not use on this path, or uses only through a CUDA-only library: the GPU-only imports the ModelScope parity
    tests stub too (xformers' attention computed with PyTorch's scaled_dot_product_attention, the same
    softmax(q k^T / sqrt(d)) v; fairscale's checkpoint wrapper as the identity: it only saves memory in training),
    here with a rotary embedding that fails if built (VGen builds it only without its temporal transformer), open_clip
    (the embedders in the same file; not built here) and ``.cuda()`` on the frame-position mask (a no-op on CPU)."""
    import torch
    from reference_models import gpu_import_stubs, modules_replaced

    class RotaryEmbedding(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            raise AssertionError("VGen built the rotary embedding: the temporal transformer is off")

    rotary = types.ModuleType("rotary_embedding_torch")
    rotary.RotaryEmbedding = RotaryEmbedding
    stubs = {**gpu_import_stubs(), "rotary_embedding_torch": rotary, "open_clip": types.ModuleType("open_clip")}
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        with modules_replaced(stubs):
            yield
    finally:
        torch.Tensor.cuda = cuda


# configs/i2vgen_xl_train.yaml's UNet merged over tools/modules/config.py's, as VGen's Config merges them
VGEN_UNET = dict(in_dim=4, dim=320, y_dim=1024, upper_len=128, context_dim=1024, concat_dim=4, out_dim=4,
                 dim_mult=[1, 2, 4, 4], num_heads=8, default_fps=8, head_dim=64, num_res_blocks=2,
                 attn_scales=[1 / 1, 1 / 2, 1 / 4], dropout=0.1, temporal_attention=True, temporal_attn_times=1,
                 use_checkpoint=True, use_fps_condition=False, use_sim_mask=False)


@check
def unet_equals_vgen_unet_full_size():
    """VGen's own ``UNetSD_I2VGen`` at full size (1.42 B parameters, random weights; the layers VGen initialises to
    zero drawn at random too) against the pack's UNet loaded from VGen's state dict by the pack's loader: the
    conditional and the unconditional call of one CFG step, 2 frames at a 16x16 latent, fp32."""
    import torch
    from i2vgen_pkg.i2vgen_core import load_unet

    with _vgen_unet_imports():
        module = vgen_module("tools/modules/unet", ("util", "unet_i2vgen"))
        torch.manual_seed(0)
        vgen = module.UNetSD_I2VGen(**VGEN_UNET).eval().requires_grad_(False)
        for p in vgen.parameters():
            if not p.any():
                p.normal_(0, 0.02)
        ours = load_unet(vgen.state_dict()).eval().requires_grad_(False)
        params = sum(p.numel() for p in vgen.parameters())
        assert params == sum(p.numel() for p in ours.parameters()), "parameter counts differ"
        g = torch.Generator().manual_seed(1)
        b, f, h, w = 1, 2, 16, 16
        x = torch.randn(b, 4, f, h, w, generator=g)
        kwargs = {"y": torch.randn(b, 77, 1024, generator=g), "image": torch.randn(b, 1, 1024, generator=g),
                  "local_image": torch.randn(b, 4, 1, h, w, generator=g).repeat(1, 1, f, 1, 1),
                  "fps": torch.tensor([16])}
        figures = {"parameters": params, "variant": ours.variant}
        with torch.no_grad():
            for branch, extra in (("cond", {}), ("uncond", {"image": torch.zeros(b, 1, 1024)})):
                call = {**kwargs, **extra}
                for t in (981, 1):
                    ts = torch.tensor([t])
                    ref = vgen(x, ts, **call)
                    out = vgen_call(ours)(x, ts, **call)
                    figures[f"{branch}_t{t}"] = _rel(out, ref)
    assert ours.variant == "i2vgen_xl", figures
    assert all(v < 1e-4 for k, v in figures.items() if k.startswith(("cond", "uncond"))), figures
    return figures


@check
def detail_encode_and_video_decode_equal_vgen_autoencoder():
    """VGen's own ``AutoencoderKL`` (``tools/modules/config.py``'s SD2.1 configuration, random weights) against
    ComfyUI's VAE built from its state dict, through the pack's nodes: I2VGen-XL Detail Encode with posterior 'sample'
    and seed s == VGen's ``encode_firsr_stage`` after ``torch.manual_seed(s)`` (the same draw: VGen's global-RNG
    ``torch.randn`` and the node's seeded generator give the same noise); posterior 'mean' == the posterior mean;
    I2VGen-XL Video Decode == VGen's ``decode`` mapped to [0, 1] as its video writer does. 96x64 pixels, 3 frames."""
    import torch
    import comfy.sd
    from i2vgen_pkg.i2vgen_core.video import preprocess as pre
    from i2vgen_pkg.nodes.encode import I2VGenXLDetailEncode
    from i2vgen_pkg.nodes.video import I2VGenXLVideoDecode

    module = vgen_module("tools/modules", ("autoencoder",))
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
                "video_kernel_size": [3, 1, 1]}
    torch.manual_seed(0)
    vgen = module.AutoencoderKL(ddconfig=ddconfig, embed_dim=4).eval().requires_grad_(False)
    vae = comfy.sd.VAE(sd={k: v.clone() for k, v in vgen.state_dict().items()})
    w, h, seed = 96, 64, 8888
    g = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (1, h, w, 3), generator=g).float() / 255
    pixels = pre.cover_resize_box(image, w, h, quantize=True)  # what the node encodes (equal to `image` here)
    x = pixels.movedim(-1, 1) * 2 - 1  # VGen's train_trans: ToTensor, Normalize(0.5, 0.5)
    figures = {}
    with torch.no_grad():
        torch.manual_seed(seed)
        ref = vgen.encode_firsr_stage(x, 1.0)
        mean = vgen.encode(x).mean
        (sampled,) = I2VGenXLDetailEncode().encode(vae, image, w, h, "sample", seed)
        (node_mean,) = I2VGenXLDetailEncode().encode(vae, image, w, h, "mean", seed)
        figures["sample"] = _rel(sampled["samples"], ref)
        figures["mean"] = _rel(node_mean["samples"], mean)
        figures["sample_vs_mean"] = _rel(ref, mean)
        z = torch.randn(1, 4, 3, h // 8, w // 8, generator=g)
        frames, _fps = I2VGenXLVideoDecode().decode(vae, {"samples": z}, 2, False, 512, False, 8.0)
        ref_frames = ((vgen.decode(z[0].movedim(1, 0)).clamp(-1, 1) + 1) / 2).movedim(1, -1)
        figures["decode"] = _rel(frames, ref_frames)
    assert figures["sample"] < 1e-4 and figures["mean"] < 1e-4 and figures["decode"] < 1e-4, figures
    assert figures["sample_vs_mean"] > 1e-3, figures  # the draw is really there
    return figures


def main() -> int:
    global VGEN
    comfy_root, repo, _demo, VGEN = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    setup(comfy_root, repo)
    run_checks(CHECKS, selected(sys.argv, 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())

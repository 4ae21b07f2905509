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

    saved = {k: sys.modules.get(k) for k in ("utils", "utils.registry_class")}
    registry = types.ModuleType("utils.registry_class")
    for name in ("DIFFUSION", "MODEL", "EMBEDDER", "AUTO_ENCODER", "INFER_ENGINE"):
        setattr(registry, name, Registry())
    package = types.ModuleType("utils")
    package.registry_class = registry
    sys.modules.update({"utils": package, "utils.registry_class": registry})
    try:
        yield
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


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
    """I2VGen-XL Sampler (ddim, ddim_uniform, cfg 9) == VGen's ddim_sample_loop with the same noise, for 10 and 50
    steps, but for the last step: VGen steps to alphas_cumprod[0], ComfyUI to 1 (a clean sample). The same loop
    with VGen's last step replaced by 1 is equal within float tolerance; the figures say what the last step is worth.
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
    for steps in (10, 50):
        (node,) = I2VGenXLSampler().sample(mp, pos, neg, {"samples": latent}, seed, steps, scale)
        node = node["samples"] * 0.18215
        original = diffusion.ddim_sample_loop(noise=noise.clone(), model=model, model_kwargs=kwargs,
                                              guide_scale=scale, ddim_timesteps=steps, eta=0.0)
        table = diffusion.alphas_cumprod
        diffusion.alphas_cumprod = torch.cat([table.new_ones(1), table[1:]])  # last step to 1, as ComfyUI's
        try:
            to_one = diffusion.ddim_sample_loop(noise=noise.clone(), model=model, model_kwargs=kwargs,
                                                guide_scale=scale, ddim_timesteps=steps, eta=0.0)
        finally:
            diffusion.alphas_cumprod = table
        figures[steps] = {"node_vs_vgen_last_step_to_1": _rel(node, to_one), "node_vs_vgen": _rel(node, original)}
    # fp32 VE arithmetic (ComfyUI) vs VP (VGen): the random tiny UNet at cfg 9 amplifies rounding over 50 steps
    assert figures[10]["node_vs_vgen_last_step_to_1"] < 1e-4, figures
    assert all(f["node_vs_vgen_last_step_to_1"] < 5e-3 for f in figures.values()), figures
    return figures


def main() -> int:
    global VGEN
    comfy_root, repo, _demo, VGEN = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    setup(comfy_root, repo)
    run_checks(CHECKS, selected(sys.argv, 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())

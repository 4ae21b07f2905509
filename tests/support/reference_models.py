"""Reference models for the numerical-parity tests (a helper module, not collected by pytest).

Two references define what our UNet must compute:

* diffusers ``I2VGenXLUNet`` (the I2VGen-XL variant). ``build_diffusers_unet`` makes a tiny one with random,
  non-zero weights, and ``diffusers_image_latents`` builds its ``image_latents`` input exactly the way
  ``I2VGenXLPipeline.prepare_image_latents`` does (frame 0 = the image latent, frame j >= 1 = ones * j / (F - 1)).

* The original ModelScope code (the MS-Image2Video and MS-Vid2Vid-XL variants):
  ``modelscope/models/multi_modal/image_to_video/modules/unet_i2v.py`` (``Img2VidSDUNet``) and
  ``modelscope/models/multi_modal/video_to_video/modules/unet_v2v.py`` (``Vid2VidSDUNet``).
  ``load_modelscope_unet_module`` executes one of those two files on its own, by path
  (``importlib.util.spec_from_file_location``), without importing the ``modelscope`` package tree (whose
  ``__init__`` pulls in a large dependency set). The files import three packages the test environment does not
  have; while the file executes, stand-ins are placed in ``sys.modules`` and removed again afterwards (so that
  nothing else, e.g. our own attention-backend probe, ever sees a fake ``xformers``):

  - ``xformers`` / ``xformers.ops``: ``memory_efficient_attention(q, k, v, attn_bias=None, op=None)`` computed
    as softmax(q k^T / sqrt(d)) v on [B, N, D] tensors with torch SDPA (what xformers computes);
  - ``fairscale.nn.checkpoint.checkpoint_wrapper``: identity (gradient checkpointing only);
  - ``rotary_embedding_torch.RotaryEmbedding``: a placeholder (only used when the file's module constant
    ``USE_TEMPORAL_TRANSFORMER`` is False; it is True in both files).

  ``unet_i2v.py`` also reads a global ``cfg`` (``cfg.default_fps`` when ``fps`` is None) that the file never
  imports (in ModelScope it leaks in from the pipeline); it is provided with ModelScope's value, 8.

  The ModelScope GroupNorms are hard-coded to 32 groups and the decoder cross-attention to a 1024-d context, so
  tiny configurations use channel widths that are multiples of 32 and context_dim = y_dim = 1024.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELSCOPE_UNET_FILES = {
    "vid2vid": ("video_to_video", "unet_v2v.py", "Vid2VidSDUNet"),
    "image2video": ("image_to_video", "unet_i2v.py", "Img2VidSDUNet"),
}
MODELSCOPE_DEFAULT_FPS = 8


# ----------------------------------------------------------------------------------------------------------------
# shared helpers


@contextlib.contextmanager
def modules_replaced(stubs: dict[str, types.ModuleType]) -> Iterator[None]:
    """`stubs` in ``sys.modules`` inside the block; afterwards each name is back to what it was (or absent)."""
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, restoring the previous count after.

    The parity models are tiny: their ops take microseconds, and intra-op threading only adds synchronisation,
    which on a busy machine turns 50 ms forwards into seconds.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def randomize_parameters(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter of ``module`` in place with random, non-zero values (fixed seed); returns it.

    Norm layers get weight 1 + N(0, 0.1) and bias N(0, 0.1); other weights N(0, 1/sqrt(fan_in)) (keeps
    activations O(1) through the deep residual stack); biases N(0, 0.05). Zero-initialised output layers of
    the references would otherwise hide wrong wiring.
    """
    gen = torch.Generator().manual_seed(seed)
    norm_types = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)
    with torch.no_grad():
        for mod_name, mod in sorted(module.named_modules(), key=lambda kv: kv[0]):
            is_norm = isinstance(mod, norm_types)
            for p_name, p in sorted(mod.named_parameters(recurse=False), key=lambda kv: kv[0]):
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                if is_norm and p_name == "weight":
                    value = 1.0 + 0.1 * noise
                elif is_norm:
                    value = 0.1 * noise
                elif p.ndim >= 2:
                    fan_in = p[0].numel()
                    value = noise / math.sqrt(fan_in)
                else:
                    value = 0.05 * noise
                p.copy_(value.to(p.dtype))
    return module


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute element difference of two tensors of the same shape (as float64)."""
    assert a.shape == b.shape, f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.double() - b.double()).abs().max().item()


def float64_copy(module: nn.Module) -> nn.Module:
    """A float64 copy of a model (the ground truth its fp32 rounding is measured against)."""
    copied = copy.deepcopy(module)
    nn.Module.to(copied, torch.float64)  # plain nn.Module.to: diffusers' override only adds a dtype warning
    return copied.eval()


def to_float64(inputs: dict) -> dict:
    """The same inputs with every floating-point tensor in float64."""
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}


def assert_fp32_parity(ours: torch.Tensor, ref: torch.Tensor, ref64: torch.Tensor, what: str,
                       rel: float = 1e-5) -> tuple[float, float]:
    """fp32 outputs agree: max |ours - ref| <= max(rel * max(1, max |ref|), 2 * max |ref - ref64|).

    The second term is the reference's own fp32 rounding error (vs. its float64 run): random tiny models with
    4-channel LayerNorms (the diffusers unit-test configuration) amplify rounding to ~1e-5 relative, and an
    implementation must not be held to more than twice the reference's own accuracy. Returns (diff, tolerance).
    """
    scale = max(1.0, ref64.abs().max().item())
    own_error = max_abs_diff(ref, ref64)
    tol = max(rel * scale, 2.0 * own_error)
    diff = max_abs_diff(ours, ref)
    assert diff <= tol, (f"{what}: fp32 max abs diff {diff:.3e} > tolerance {tol:.3e} (max |ref| {scale:.3f}, "
                         f"reference's own fp32 error {own_error:.3e}, ours vs float64 truth "
                         f"{max_abs_diff(ours, ref64):.3e})")
    return diff, tol


def assert_float64_parity(ours64: torch.Tensor, ref64: torch.Tensor, what: str, rel: float = 1e-10) -> float:
    """float64 outputs agree to rel * max(1, max |ref|): the two implementations compute the same function."""
    scale = max(1.0, ref64.abs().max().item())
    diff = max_abs_diff(ours64, ref64)
    assert diff <= rel * scale, f"{what}: float64 max abs diff {diff:.3e} > {rel * scale:.3e}"
    return diff


# ----------------------------------------------------------------------------------------------------------------
# diffusers I2VGenXLUNet

DIFFUSERS_UNIT_TEST_CONFIG: dict[str, Any] = {
    # the configuration of diffusers' own I2VGenXL pipeline unit test
    "block_out_channels": (4, 8),
    "layers_per_block": 1,
    "cross_attention_dim": 4,
    "attention_head_dim": 4,
    "norm_num_groups": 2,
    "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
}

DIFFUSERS_REAL_SHAPED_CONFIG: dict[str, Any] = {
    # the real 4-level layout (attention on the first three levels, 2 resnets per level, 32 norm groups), narrow
    "block_out_channels": (32, 64, 64, 64),
    "layers_per_block": 2,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
}


def diffusers_i2vgen_unet_class() -> type | None:
    """diffusers' ``I2VGenXLUNet`` class, or None when diffusers is missing or no longer ships it."""
    try:
        from diffusers import I2VGenXLUNet
    except Exception:  # ImportError, or the lazy import failing inside diffusers
        return None
    return I2VGenXLUNet


def build_diffusers_unet(config: dict[str, Any], seed: int = 0) -> nn.Module:
    """A diffusers ``I2VGenXLUNet`` built from ``config`` with random non-zero weights, fp32, in eval mode."""
    cls = diffusers_i2vgen_unet_class()
    if cls is None:
        raise RuntimeError("diffusers with I2VGenXLUNet is required")
    torch.manual_seed(seed)
    unet = cls(**config)
    randomize_parameters(unet, seed)
    return unet.float().eval()


def diffusers_image_latents(image_latent: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B,4,h,w] image latent -> [B,4,F,h,w] ``image_latents`` as I2VGenXLPipeline.prepare_image_latents builds it."""
    latents = image_latent.unsqueeze(2)
    ramp = [torch.ones_like(latents[:, :, :1]) * ((j + 1) / (num_frames - 1)) for j in range(num_frames - 1)]
    if ramp:
        latents = torch.cat([latents, torch.cat(ramp, dim=2)], dim=2)
    return latents


def run_diffusers_unet(
    unet: nn.Module,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    *,
    text: torch.Tensor,
    image_embedding: torch.Tensor,
    image_latent: torch.Tensor,
    fps: torch.Tensor,
) -> torch.Tensor:
    """Run the diffusers UNet with our API's inputs (image_embedding [B,C], image_latent [B,4,h,w])."""
    with torch.no_grad():
        out = unet(
            sample,
            timestep,
            fps=fps,
            image_latents=diffusers_image_latents(image_latent, sample.shape[2]),
            image_embeddings=image_embedding.unsqueeze(1),
            encoder_hidden_states=text,
            return_dict=False,
        )[0]
    return out


def with_doubled_image_branch(unet: nn.Module) -> nn.Module:
    """A copy of a diffusers I2VGenXLUNet whose conv_in weights for the image-branch channels are doubled.

    VGen's forward adds the image-branch output twice before conv_in; this copy computes exactly that.
    """
    doubled = copy.deepcopy(unet)
    n_latent = doubled.config.in_channels
    with torch.no_grad():
        doubled.conv_in.weight[:, n_latent:] *= 2.0
    return doubled


# ----------------------------------------------------------------------------------------------------------------
# original ModelScope code


def modelscope_root() -> Path | None:
    """Directory of the installed ``modelscope`` package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("modelscope")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def modelscope_unet_file(kind: str) -> Path | None:
    """Path of the ModelScope source file defining the ``kind`` ("vid2vid" | "image2video") UNet, or None."""
    root = modelscope_root()
    if root is None:
        return None
    folder, filename, _ = MODELSCOPE_UNET_FILES[kind]
    path = root / "models" / "multi_modal" / folder / "modules" / filename
    return path if path.is_file() else None


def gpu_import_stubs() -> dict[str, types.ModuleType]:
    """Stand-ins for the packages the ModelScope (and VGen) UNet files import but a CPU environment lacks."""

    def memory_efficient_attention(q, k, v, attn_bias=None, op=None):
        # xformers semantics on [B, N, D]: softmax(q k^T / sqrt(D)) v
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)

    xformers = types.ModuleType("xformers")
    xformers_ops = types.ModuleType("xformers.ops")
    xformers_ops.memory_efficient_attention = memory_efficient_attention
    xformers.ops = xformers_ops

    fairscale = types.ModuleType("fairscale")
    fairscale_nn = types.ModuleType("fairscale.nn")
    fairscale_ckpt = types.ModuleType("fairscale.nn.checkpoint")
    fairscale_ckpt.checkpoint_wrapper = lambda module, *args, **kwargs: module
    fairscale.nn = fairscale_nn
    fairscale_nn.checkpoint = fairscale_ckpt

    class RotaryEmbedding(nn.Module):
        """Placeholder: the reference UNets only build it when USE_TEMPORAL_TRANSFORMER is False."""

        def __init__(self, dim: int, *args: Any, **kwargs: Any) -> None:
            super().__init__()
            self.dim = dim

        def rotate_queries_or_keys(self, t: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError("rotary embeddings are not part of the parity references")

    rotary = types.ModuleType("rotary_embedding_torch")
    rotary.RotaryEmbedding = RotaryEmbedding

    return {
        "xformers": xformers,
        "xformers.ops": xformers_ops,
        "fairscale": fairscale,
        "fairscale.nn": fairscale_nn,
        "fairscale.nn.checkpoint": fairscale_ckpt,
        "rotary_embedding_torch": rotary,
    }


def load_modelscope_unet_module(kind: str, float64: bool = False) -> types.ModuleType:
    """Execute ModelScope's UNet source file for ``kind`` by path and return it as a private module.

    Stub modules are visible in ``sys.modules`` only while the file executes (see the module docstring).
    ``float64=True`` gives a copy whose ``sinusoidal_embedding`` result is cast to float64: the file computes it
    in float32 (``timesteps.float()``), which a float64 model cannot take; the values stay the float32 ones
    (exact where the float32 sinusoid is exact, e.g. at t = 0).
    Raises FileNotFoundError when modelscope (or the file) is not installed.
    """
    path = modelscope_unet_file(kind)
    if path is None:
        raise FileNotFoundError(f"modelscope's {MODELSCOPE_UNET_FILES[kind][1]} is not installed")
    spec = importlib.util.spec_from_file_location(f"_parity_reference_modelscope_{kind}", path)
    module = importlib.util.module_from_spec(spec)
    with modules_replaced(gpu_import_stubs()):
        spec.loader.exec_module(module)
    if kind == "image2video":
        module.cfg = types.SimpleNamespace(default_fps=MODELSCOPE_DEFAULT_FPS)
    if float64:
        float32_sinusoid = module.sinusoidal_embedding
        module.sinusoidal_embedding = lambda timesteps, dim: float32_sinusoid(timesteps, dim).double()
    return module


def build_modelscope_unet(
    kind: str,
    *,
    dim: int = 32,
    dim_mult: tuple[int, ...] = (1, 2, 2, 2),
    head_dim: int = 16,
    num_res_blocks: int = 2,
    seed: int = 0,
    module: types.ModuleType | None = None,
) -> nn.Module:
    """A tiny ModelScope ``Vid2VidSDUNet`` / ``Img2VidSDUNet`` with random non-zero weights, fp32, eval mode.

    Everything not given here is the real model's value (in/out 4 channels, 8 heads in the initial temporal
    transformer, attention on the first three levels, context and CLIP dims 1024, 4 image tokens, dropout 0.1).
    """
    module = module or load_modelscope_unet_module(kind)
    cls = getattr(module, MODELSCOPE_UNET_FILES[kind][2])
    kwargs: dict[str, Any] = dict(
        in_dim=4,
        dim=dim,
        y_dim=1024,
        context_dim=1024,
        out_dim=4,
        dim_mult=list(dim_mult),
        num_heads=8,
        head_dim=head_dim,
        num_res_blocks=num_res_blocks,
        attn_scales=[1 / 1, 1 / 2, 1 / 4],
        dropout=0.1,
        temporal_attention=True,
        temporal_attn_times=1,
        use_checkpoint=False,
        use_image_dataset=False,
        use_sim_mask=False,
    )
    if kind == "image2video":
        kwargs.update(num_tokens=4, default_fps=MODELSCOPE_DEFAULT_FPS)
    else:
        kwargs.update(use_fps_condition=False)
    torch.manual_seed(seed)
    unet = cls(**kwargs)
    randomize_parameters(unet, seed)
    unet.build_kwargs = kwargs  # to rebuild it from another module copy (float64_modelscope_copy)
    return unet.float().eval()


def float64_modelscope_copy(unet: nn.Module, module64: types.ModuleType) -> nn.Module:
    """The same ModelScope reference model (same weights) built from a ``float64=True`` module copy, in float64."""
    cls = getattr(module64, type(unet).__name__)
    copied = cls(**unet.build_kwargs)
    copied.load_state_dict(unet.state_dict())
    return copied.double().eval()


def run_modelscope_unet(
    unet: nn.Module,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    *,
    text: torch.Tensor | None = None,
    image_embedding: torch.Tensor | None = None,
    fps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a ModelScope reference UNet with our API's inputs.

    Vid2VidSDUNet: ``y`` = text [B,L,1024]. Img2VidSDUNet: ``y`` = CLIP image embedding as the ModelScope pipeline
    passes it, [B,1,1024] (ours takes [B,1024]), and ``fps`` [B] long (None -> the model's default, 8).
    """
    with torch.no_grad():
        if text is not None:
            return unet(sample, timestep, text)
        return unet(sample, timestep, image_embedding.unsqueeze(1), fps=fps)

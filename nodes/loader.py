"""I2VGenXLModelLoader: any I2VGen-XL-family UNet checkpoint to a native ComfyUI MODEL."""

from __future__ import annotations

import logging
import os

import torch

import comfy.model_management
import comfy.model_patcher
import folder_paths

from ..i2vgen_core import CheckpointError
from ..i2vgen_core.config import ATTENTION_BACKENDS, VARIANT_NAMES
from ..i2vgen_core.dtypes import FP8, torch_dtype
from ..i2vgen_core.memory import UNET_PARAMS
from ..i2vgen_core.speed.levers import SpeedLevers, apply_levers
from ..i2vgen_core.weights.catalog import missing_unet_message
from ..i2vgen_core.weights.read import peek_safetensors
from .comfy_model import I2VGenXLConfig, I2VGenXLModel, load_comfy_unet

log = logging.getLogger(__name__)

#: Model folder registered by this package (ComfyUI/models/i2vgen); "diffusion_models" is listed as well.
I2VGEN_FOLDER = "i2vgen"
SEARCH_FOLDERS = (I2VGEN_FOLDER, "diffusion_models")

#: The weight_dtype choices in the combo's order (half precision first; saved workflows hold these names).
WEIGHT_DTYPES = {"auto": None, **{name: torch_dtype(name) for name in ("fp16", "bf16", "fp32", *FP8)}}

#: Parameter count of the full-size family members (used by ComfyUI's dtype heuristics when a file can't be peeked).
FULL_SIZE_PARAMS = UNET_PARAMS["i2vgen_xl"]


def register_model_folder() -> None:
    """Add ComfyUI/models/i2vgen as the "i2vgen" model folder (extra_model_paths.yaml may add more paths)."""
    path = os.path.join(folder_paths.models_dir, I2VGEN_FOLDER)
    if I2VGEN_FOLDER in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[I2VGEN_FOLDER]
        if path not in paths:
            paths.append(path)
        if isinstance(exts, set):
            exts.update(folder_paths.supported_pt_extensions)
    else:
        folder_paths.folder_names_and_paths[I2VGEN_FOLDER] = ([path], set(folder_paths.supported_pt_extensions))


def list_unet_files() -> list[str]:
    """File names offered by the loader: the i2vgen folder first, then diffusion_models, without duplicates."""
    names: list[str] = []
    for folder in SEARCH_FOLDERS:
        try:
            for name in folder_paths.get_filename_list(folder):
                if name not in names:
                    names.append(name)
        except KeyError:
            continue
    return names


def resolve_unet_path(name: str) -> str:
    """Full path of a listed file, looked up in the i2vgen folder first. Names come from ComfyUI's file list (a name
    with ../ or an absolute path fails its validation); a listed file may be a link (e.g. into a Hugging Face cache),
    as ComfyUI's own loaders allow."""
    for folder in SEARCH_FOLDERS:
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            path = None
        if path is not None:
            return path
    raise FileNotFoundError(missing_unet_message(name))


def peek_checkpoint(path: str) -> tuple[int, torch.dtype | None]:
    """(parameter count, dominant float dtype) of a safetensors file from its header; a full-size guess otherwise."""
    if not path.endswith((".safetensors", ".sft")):
        return FULL_SIZE_PARAMS, None
    try:
        params, dominant = peek_safetensors(path)
    except Exception:  # unreadable header: the core loader reports the real problem
        return FULL_SIZE_PARAMS, None
    return params or FULL_SIZE_PARAMS, torch_dtype(dominant) if dominant else None


def pick_dtypes(weight_dtype: str, params: int, file_dtype: torch.dtype | None,
                load_device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """(storage dtype, manual-cast compute dtype or None) with ComfyUI's own rules for "auto"."""
    supported = list(I2VGenXLConfig.supported_inference_dtypes)
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {weight_dtype!r}")
    dtype = WEIGHT_DTYPES[weight_dtype]
    if dtype is None:
        dtype = comfy.model_management.unet_dtype(device=load_device, model_params=params,
                                                  supported_dtypes=supported, weight_dtype=file_dtype)
    # fp8 (and fp16/bf16 where the device can't compute in them) is stored as is and computed in what it can
    return dtype, comfy.model_management.unet_manual_cast(dtype, load_device, supported)


class I2VGenXLModelLoader:
    """Load an I2VGen-XL, MS-Image2Video or MS-Vid2Vid-XL UNet as a native ComfyUI MODEL."""

    DESCRIPTION = ("Loads an I2VGen-XL family UNet (I2VGen-XL, the MS-Image2Video cascade base or the MS-Vid2Vid-XL "
                   "refiner) from ComfyUI/models/i2vgen or models/diffusion_models. diffusers, VGen and ModelScope "
                   "files (.safetensors, or .pth read safely) are recognised from their tensor names. The MODEL works "
                   "with the I2VGen-XL samplers and with ComfyUI's KSampler, LoRA and memory management.")
    CATEGORY = "I2VGen-XL/loaders"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The UNet with its noise schedule (v-prediction) and latent format, ready for the samplers.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "unet_name": (list_unet_files(), {
                    "tooltip": "UNet checkpoint from ComfyUI/models/i2vgen or models/diffusion_models: "
                               "i2vgen-xl unet/diffusion_pytorch_model(.fp16).safetensors, i2vgen_xl_00854500.pth, "
                               "base_03_alldata_fps_v_80g_0789000.pth (MS-Image2Video) or non_ema_0035000.pth "
                               "(MS-Vid2Vid-XL). The variant is detected from the file."}),
                "weight_dtype": (list(WEIGHT_DTYPES), {
                    "default": "auto",
                    "tooltip": "Precision the weights are kept in. auto = ComfyUI's choice for your device (fp16 or "
                               "bf16 on most GPUs, fp32 on CPU). fp8 halves the memory of fp16 and computes in "
                               "fp16/bf16, with a small quality cost."}),
                "attention": (list(ATTENTION_BACKENDS), {
                    "default": "auto",
                    "tooltip": "Attention implementation. auto = ComfyUI's choice, so its --use-sage-attention / "
                               "--use-flash-attention / xformers / PyTorch options and per-model attention "
                               "overrides apply (its PyTorch attention where ComfyUI only falls back to a generic "
                               "one, e.g. --cpu). A named backend bypasses ComfyUI's choice: sdpa = PyTorch "
                               "scaled-dot-product attention; xformers needs the xformers package and a CUDA GPU; "
                               "chunked uses the least memory and is the slowest."}),
            },
            "optional": {
                "fused_projections": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Compute each attention's q/k/v (or k/v) projections as one matrix multiply. Same "
                               "result, fewer kernel launches; weights and LoRA keys stay separate. Turned off "
                               "automatically per layer while ComfyUI casts or patches weights on the fly."}),
                "channels_last": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Keep activations and convolution weights in NHWC layout (tensor-core friendly on "
                               "NVIDIA GPUs, spatial attention tokens become free views). Same result; measure "
                               "with bench/gpu.py before relying on it."}),
                "fused_kernels": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Run GroupNorm+SiLU and GEGLU as fused passes (Triton kernels on NVIDIA GPUs when "
                               "triton is installed, else an equivalent torch path); the temporal layers then make "
                               "no layout copies. Same result; measure with bench/gpu.py --suite before relying on "
                               "it."}),
                "fp8_compute": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Fast fp8: matrix multiplies in fp8 on GPUs with fp8 tensor cores (Ada, Hopper), "
                               "through ComfyUI's own fp8 layers (like --fast fp8_matrix_mult). Needs an fp8 "
                               "weight_dtype; no effect elsewhere. Slightly changes the output."}),
                "compile": (["disabled", "blocks"], {
                    "default": "disabled",
                    "tooltip": "blocks = torch.compile every resnet and transformer block (regional compilation): "
                               "the first run compiles for minutes, later runs at the same size are faster. Needs "
                               "a working Triton/C++ toolchain; leave disabled if unsure."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, unet_name):
        """The file must be listed; if not, say which file to download, from where and into which folder."""
        from .model_help import unet_name_problem

        return unet_name_problem(unet_name, list_unet_files()) or True

    def load(self, unet_name: str, weight_dtype: str = "auto", attention: str = "auto",
             fused_projections: bool = True, channels_last: bool = False, compile: str = "disabled",
             fused_kernels: bool = False, fp8_compute: bool = False):
        path = resolve_unet_path(unet_name)
        load_device = comfy.model_management.get_torch_device()
        offload_device = comfy.model_management.unet_offload_device()
        params, file_dtype = peek_checkpoint(path)
        dtype, manual_cast = pick_dtypes(weight_dtype, params, file_dtype, load_device)
        # built in one go from ComfyUI's own layer classes, like its native models (casting, low-VRAM loading, LoRA)
        try:
            unet = load_comfy_unet(path, dtype=dtype, manual_cast_dtype=manual_cast, device=offload_device,
                                   load_device=load_device, fp8_optimizations=fp8_compute)
        except CheckpointError as err:  # its message names the file
            raise ValueError(str(err)) from None
        # fp8_compute is ComfyUI's own fp8 matrix multiply (its layer classes, chosen above), not the core's lever
        levers = SpeedLevers(attention=attention, fused_projections=fused_projections, channels_last=channels_last,
                             fused_kernels=fused_kernels, compile=compile == "blocks")
        self._apply_levers(unet, levers, load_device, unet_name)
        model = I2VGenXLModel(unet, weight_dtype=dtype, manual_cast_dtype=manual_cast, device=offload_device)
        log.info("I2VGen-XL: loaded %s as %s, weights %s, compute %s, attention %s", unet_name,
                 VARIANT_NAMES.get(model.i2vgen_variant, model.i2vgen_variant), dtype, manual_cast or dtype,
                 attention)
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
        # cores after 0.3.64 rebuild a MODEL from this (multi-GPU and deep clones); 0.3.64 never reads it
        patcher.cached_patcher_init = (reload_model, (unet_name, weight_dtype, attention, fused_projections,
                                                      channels_last, compile, fused_kernels, fp8_compute))
        return (patcher,)

    @staticmethod
    def _apply_levers(unet, levers: SpeedLevers, load_device: torch.device, unet_name: str) -> None:
        """Switch the speed levers; the attention backend is checked for the device the model will run on (not for
        the CPU copy it is loaded into). A lever that cannot work there is an error naming the file."""
        try:
            apply_levers(unet, levers, load_device)
        except ValueError as err:
            raise ValueError(f"{unet_name}: {err}") from None


def reload_model(*loader_args, disable_dynamic: bool = False):
    """A fresh MODEL from the loader's arguments, with weights of its own: the factory newer cores call through
    ``ModelPatcher.cached_patcher_init`` (`disable_dynamic` is theirs; the pack's patcher is never dynamic)."""
    return I2VGenXLModelLoader().load(*loader_args)[0]


NODE_CLASS_MAPPINGS = {"I2VGenXLModelLoader": I2VGenXLModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"I2VGenXLModelLoader": "I2VGen-XL Model Loader"}

register_model_folder()

"""I2VGen-XL family core: one spatio-temporal UNet, its checkpoints, schedules and samplers. No ComfyUI imports."""

from .checkpoint import CheckpointError, export_state_dict
from .config import UNetConfig, tiny_config, variant_config
from .loader import load_unet
from .unet import I2VGenUNet, build_unet

__all__ = ["CheckpointError", "I2VGenUNet", "UNetConfig", "build_unet", "export_state_dict", "load_unet",
           "tiny_config", "variant_config"]

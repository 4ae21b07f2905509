"""I2VGen-XL for ComfyUI: image-to-video nodes (I2VGen-XL, MS-Image2Video, MS-Vid2Vid-XL) on a GPU-optimised core.

ComfyUI imports this folder as a package; everything below is imported relatively so that ComfyUI's own top-level
``nodes`` module and ours never collide. Outside ComfyUI (no ``comfy`` package, e.g. pytest collecting the
repository, or a plain ``import`` of the core) the node mappings are empty and only ``i2vgen_core`` is usable.
"""

import importlib.util

WEB_DIRECTORY = "./js"

if importlib.util.find_spec("comfy") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    NODE_CLASS_MAPPINGS = {}
    NODE_DISPLAY_NAME_MAPPINGS = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

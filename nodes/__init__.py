"""ComfyUI adapters of the I2VGen-XL package; merged node mappings of every node module.

Only ever imported relatively (``from .nodes import ...`` in the package root): ComfyUI has a top-level ``nodes``
module of its own.
"""

from __future__ import annotations

from . import encode, estimate_routes, latent, loader, long_video, model_help, preview, sampling, video

_MODULES = (loader, encode, latent, sampling, video, long_video)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(getattr(_module, "NODE_CLASS_MAPPINGS", {}))
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_module, "NODE_DISPLAY_NAME_MAPPINGS", {}))

preview.install()  # animated previews of every frame (js/preview.js; opt-out setting "I2VGen-XL.AnimatedPreview")
preview.register_routes()
model_help.register_routes()
estimate_routes.register_routes()  # the memory estimate before a run (js/estimate.js)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

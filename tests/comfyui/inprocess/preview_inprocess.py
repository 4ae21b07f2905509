"""In ComfyUI's Python, no server: the latent_preview hook of nodes/preview.py. Prints one JSON object.

Usage: COMFYUI_PYTHON preview_inprocess.py COMFYUI_PATH REPO
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inprocess_checks import setup  # noqa: E402  (ComfyUI imported without a server, the pack as ComfyUI loads it)


def main(comfy_root: str, repo: str) -> dict:
    setup(comfy_root, repo)
    import comfy.cli_args

    import torch
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod
    from comfy.taesd.taesd import TAESD
    from i2vgen_pkg.nodes import preview
    from i2vgen_pkg.nodes.comfy_model import I2VGenLatentFormat

    class StandIn:
        client_id = "browser"
        last_node_id = "7"
        last_prompt_id = "job-1"
        sockets_metadata = {"browser": {"feature_flags": {"supports_preview_metadata": True}},
                            "old": {"feature_flags": {}}}

        def __init__(self):
            self.sent = []

        def send_sync(self, event, data, sid=None):
            self.sent.append((event, data, sid))

    server = StandIn()
    sys.modules["server"] = types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=server))
    out: dict = {"hook_installed": bool(getattr(latent_preview.get_previewer, "_i2vgen_animated", False))}
    fmt = I2VGenLatentFormat()
    comfy.cli_args.args.preview_method = LatentPreviewMethod.Latent2RGB
    x0 = torch.randn(1, 4, 6, 10, 14)

    out["no_setting"] = type(latent_preview.get_previewer(torch.device("cpu"), fmt)).__name__
    preview.SETTINGS.set("browser", True)
    animated = latent_preview.get_previewer(torch.device("cpu"), fmt)
    out["with_setting"] = type(animated).__name__
    out["returned"] = repr(animated.decode_latent_to_preview_image("JPEG", x0))
    event, layout, sid = server.sent[0]
    kind, (image, metadata), sid2 = server.sent[1]
    out["layout"], out["layout_sid"] = layout, sid
    out["image_kind"], out["image_size"], out["metadata"] = kind, list(image[1].size), metadata
    kind, (image, metadata), _ = server.sent[2]
    out["thumbnail_kind"], out["thumbnail_size"], out["thumbnail_metadata"] = kind, list(image[1].size), metadata
    out["image_latent_4d"] = type(animated.decode_latent_to_preview_image("JPEG", torch.randn(1, 4, 10, 14))).__name__
    out["other_format"] = type(latent_preview.get_previewer(torch.device("cpu"),
                                                            comfy.latent_formats.SD15())).__name__
    server.client_id = "old"
    preview.SETTINGS.set("old", True)
    out["old_frontend"] = type(latent_preview.get_previewer(torch.device("cpu"), fmt)).__name__
    server.client_id = "browser"
    comfy.cli_args.args.preview_method = LatentPreviewMethod.NoPreviews
    out["preview_method_none"] = repr(latent_preview.get_previewer(torch.device("cpu"), fmt))
    taesd = TAESD(None, None, latent_channels=4)  # random weights: shapes only
    p = preview.AnimatedPreviewer(None, fmt, server, "browser", taesd=taesd)
    out["taesd_frames"] = list(p.frames(x0[0]).shape)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))

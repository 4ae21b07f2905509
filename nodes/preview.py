"""Animated previews of every frame while sampling, for the pack's samplers and for KSampler on the pack's MODEL.

ComfyUI's ``latent_preview.get_previewer`` picks one previewer per sampling run, and its latent -> RGB previewer
shows only frame 0 of a video latent. ``install()`` wraps that function: for the pack's latent format, and only for
a browser that asked for it (js/preview.js posts the "I2VGen-XL.AnimatedPreview" setting with its client id), the
previewer turns *every* frame of the first video into RGB (latent -> RGB factors, or TAESD where
``models/vae_approx/taesd_decoder.*`` is installed and ``--preview-method taesd`` is chosen), lays the frames out as
one sprite sheet and sends, per step:

1. a small JSON event ``i2vgen-xl.preview``: {node, frames, cols, rows, fps, step} (node = the sampler's id);
2. the sheet as a standard preview-with-metadata image whose ``display_node_id`` is ``i2vgen-xl-preview``, so the
   frontend's own node preview ignores it while js/preview.js cuts it into frames and animates them on the node.

The JPEG is encoded on the server's event-loop thread like ComfyUI's own previews; the sampling thread only does one
small matrix product per step. Other clients, API clients and ``I2VGEN_XL_ANIMATED_PREVIEW=0`` get ComfyUI's
first-frame preview unchanged; ``--preview-method none`` turns every preview off as usual.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import torch

from ..i2vgen_core.video.preview import latent_to_rgb, sprite_sheet
from .common import server_routes

log = logging.getLogger(__name__)

EVENT = "i2vgen-xl.preview"  # JSON event announcing a sheet's layout
SHEET_NODE_ID = "i2vgen-xl-preview"  # display_node_id of the sheets (no ":": the frontend reads ":" as a subgraph path)
# display_node_id of the job's thumbnail (frame 0): no node has it, so no node shows it, but newer frontends keep the
# last preview sent with a prompt id as the job's thumbnail in the queue
THUMBNAIL_NODE_ID = "i2vgen-xl-thumbnail"
ROUTE = "/i2vgen-xl/preview"
SETTING_ID = "I2VGen-XL.AnimatedPreview"
ENV_SWITCH = "I2VGEN_XL_ANIMATED_PREVIEW"  # "0"/"false"/"off": the server never sends animated previews
DEFAULT_FPS = 8
TAESD_PIXELS_PER_CALL = 1 << 21  # decoded pixels per TAESD call (about 2 frames at 1280x704)


#: How many browsers' settings the server keeps; past it the least recently set of the disconnected ones goes.
MAX_CLIENTS = 1024
#: Longest client id accepted (ComfyUI's are 32-character hex uuids); longer ids are refused, not stored.
MAX_CLIENT_ID_CHARS = 128


class ClientSettings:
    """Which websocket clients asked for animated previews (the browser setting), thread-safe and bounded.

    Only "animated" choices are stored (off is the default), at most `limit` of them, least recently set first out;
    a client that `connected(client_id)` says is still on a socket is kept over one that left, so a connected
    browser's setting holds however many other ids are posted."""

    def __init__(self, limit: int = MAX_CLIENTS, connected=None):
        self._lock = threading.Lock()
        self._animated: OrderedDict[str, bool] = OrderedDict()
        self.limit = max(1, int(limit))
        self._connected = connected or (lambda client_id: False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._animated)

    def set(self, client_id: str, animated: bool) -> None:
        """Record one client's choice (forgetting the oldest disconnected client past the limit)."""
        client_id = str(client_id)
        with self._lock:
            if not animated:
                self._animated.pop(client_id, None)
                return
            self._animated[client_id] = True
            self._animated.move_to_end(client_id)
            if len(self._animated) > self.limit:
                self._animated.pop(self._eviction_candidate(client_id))

    def _eviction_candidate(self, newest: str) -> str:
        """The least recently set client no longer connected, else the least recently set one (never `newest`)."""
        oldest = None
        for client_id in self._animated:
            if client_id == newest:
                continue
            if oldest is None:
                oldest = client_id
            if not self._connected(client_id):
                return client_id
        return oldest

    def wants(self, client_id) -> bool:
        """True when the client asked for animated previews and the server switch allows them."""
        if server_switch_off():
            return False
        with self._lock:
            return self._animated.get(str(client_id), False)


def connected_client(client_id: str) -> bool:
    """Whether ComfyUI's server has an open websocket for `client_id` (False outside a ComfyUI server)."""
    try:
        import server as comfy_server
    except ImportError:
        return False
    instance = getattr(comfy_server.PromptServer, "instance", None)
    return client_id in getattr(instance, "sockets", {})


SETTINGS = ClientSettings(connected=connected_client)


def server_switch_off() -> bool:
    """The server-side off switch: environment variable I2VGEN_XL_ANIMATED_PREVIEW=0."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no")


def is_pack_format(latent_format) -> bool:
    """Whether a latent format is the pack's video format (5-D SD latents)."""
    try:
        from .comfy_model import I2VGenLatentFormat
    except ImportError:
        return False
    return isinstance(latent_format, I2VGenLatentFormat)


def find_taesd_decoder() -> str | None:
    """Full path of models/vae_approx/taesd_decoder.* (the SD1/SD2 tiny decoder), or None."""
    import folder_paths

    try:
        names = folder_paths.get_filename_list("vae_approx")
    except KeyError:
        return None
    name = next((n for n in names if os.path.basename(n).startswith("taesd_decoder")), None)
    return folder_paths.get_full_path("vae_approx", name) if name else None


class AnimatedPreviewer:
    """Previewer of every frame; falls back to ComfyUI's previewer for anything that is not a 5-D latent."""

    def __init__(self, fallback, latent_format, server, client_id, taesd=None, max_frame_side: int = 512,
                 fps: int = DEFAULT_FPS):
        self.fallback = fallback
        self.factors = latent_format.latent_rgb_factors
        self.bias = getattr(latent_format, "latent_rgb_factors_bias", None)
        self.server = server
        self.client_id = client_id
        self.taesd = taesd
        self.max_frame_side = int(max_frame_side)
        self.fps = int(fps)
        self.step = 0

    def frames(self, video: torch.Tensor) -> torch.Tensor:
        """[C, F, h, w] latent of one video -> [F, H, W, 3] RGB in -1..1."""
        if self.taesd is None:
            return latent_to_rgb(video.float(), self.factors, self.bias)
        x = video.movedim(1, 0)  # [F, C, h, w]
        per = max(1, TAESD_PIXELS_PER_CALL // (64 * x.shape[-2] * x.shape[-1]))
        device = next(self.taesd.parameters()).device
        out = [self.taesd.decode(x[i:i + per].to(device)).movedim(1, -1).float() for i in range(0, len(x), per)]
        return torch.cat(out)

    def decode_latent_to_preview_image(self, preview_format, x0):
        if x0.ndim != 5:
            return self.fallback.decode_latent_to_preview_image(preview_format, x0)
        with torch.no_grad():
            frames = self.frames(x0[0])
        sheet, cols, rows = sprite_sheet(frames, max_frame_side=self.max_frame_side)
        self.send(sheet, frames.shape[0], cols, rows)
        return None  # the sheet went out on its own; ComfyUI sends the progress without an image

    def send(self, sheet: torch.Tensor, frames: int, cols: int, rows: int) -> None:
        """Queue the layout event and the sheet for the client (encoded on the server's event loop)."""
        from PIL import Image
        from protocol import BinaryEventTypes

        display_id = self.server.last_node_id  # the executing node as the frontend knows it (subgraph path)
        prompt_id = getattr(self.server, "last_prompt_id", None)
        try:
            from comfy_execution.progress import get_progress_state

            prompt_id = get_progress_state().prompt_id or prompt_id
        except ImportError:
            pass
        self.step += 1
        layout = {"node": display_id, "prompt_id": prompt_id, "frames": int(frames),
                  "cols": cols, "rows": rows, "fps": self.fps, "step": self.step}
        self.server.send_sync(EVENT, layout, self.client_id)
        # the sheet goes without a prompt id, so the queue never takes the whole sheet as the job's thumbnail;
        # frame 0 alone goes with it, under a display id no node has
        sheet_meta = {"node_id": display_id, "display_node_id": SHEET_NODE_ID, "prompt_id": None,
                      "parent_node_id": None, "real_node_id": display_id}
        image = Image.fromarray(sheet.numpy())
        self.server.send_sync(BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA, (("JPEG", image, None), sheet_meta),
                              self.client_id)
        if prompt_id:
            frame_h, frame_w = sheet.shape[0] // rows, sheet.shape[1] // cols
            thumb_meta = dict(sheet_meta, display_node_id=THUMBNAIL_NODE_ID, prompt_id=prompt_id)
            first = Image.fromarray(sheet[:frame_h, :frame_w].numpy())
            self.server.send_sync(BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA, (("JPEG", first, None), thumb_meta),
                                  self.client_id)


def animated_previewer(previewer, device, latent_format):
    """An AnimatedPreviewer for this run when it applies, else None (ComfyUI's previewer is used)."""
    if previewer is None or not is_pack_format(latent_format):
        return None
    try:
        import server as comfy_server
        from comfy.cli_args import LatentPreviewMethod, args
        from comfy_api import feature_flags
    except ImportError:
        return None
    instance = getattr(comfy_server.PromptServer, "instance", None)
    client_id = getattr(instance, "client_id", None)
    if instance is None or client_id is None or not SETTINGS.wants(client_id):
        return None
    if not feature_flags.supports_feature(instance.sockets_metadata, client_id, "supports_preview_metadata"):
        return None  # a frontend that cannot receive preview metadata gets ComfyUI's preview
    taesd = None
    if args.preview_method == LatentPreviewMethod.TAESD:
        path = find_taesd_decoder()
        if path:
            from comfy.taesd.taesd import TAESD

            taesd = TAESD(None, path, latent_channels=4).to(device)
    return AnimatedPreviewer(previewer, latent_format, instance, client_id, taesd=taesd,
                             max_frame_side=int(getattr(args, "preview_size", 512) or 512))


def install() -> bool:
    """Wrap latent_preview.get_previewer once (idempotent); True when the wrapper is in place."""
    try:
        import latent_preview
    except ImportError:
        return False
    original = latent_preview.get_previewer
    if getattr(original, "_i2vgen_animated", False):
        return True

    def get_previewer(device, latent_format):
        previewer = original(device, latent_format)
        try:
            return animated_previewer(previewer, device, latent_format) or previewer
        except Exception as err:  # a preview must never break sampling
            log.warning("I2VGen-XL: animated preview unavailable (%s); using ComfyUI's preview", err)
            return previewer

    get_previewer._i2vgen_animated = True
    get_previewer.__wrapped__ = original
    latent_preview.get_previewer = get_previewer
    return True


def preview_setting(body) -> tuple[str, bool]:
    """(client_id, animated) of a POST body, or a ValueError saying what is expected."""
    client_id = body.get("client_id") if isinstance(body, dict) else None
    animated = body.get("animated") if isinstance(body, dict) else None
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS or \
            not isinstance(animated, bool):
        raise ValueError(f"expected JSON {{client_id: a string of 1 to {MAX_CLIENT_ID_CHARS} characters, "
                         f"animated: true or false}}")
    return client_id, animated


def register_routes() -> None:
    """POST /i2vgen-xl/preview {client_id, animated}: a browser's setting; GET: the server switch (and how many
    settings are kept, of at most how many)."""
    found = server_routes()
    if found is None:
        return
    routes, web = found

    @routes.post(ROUTE)
    async def set_preview(request):
        try:
            body = await request.json()
        except ValueError:  # not JSON (or not UTF-8): answered like a JSON body of the wrong shape
            body = None
        try:
            client_id, animated = preview_setting(body)
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        SETTINGS.set(client_id, animated)
        return web.json_response({"animated": SETTINGS.wants(client_id), "server_switch_off": server_switch_off()})

    @routes.get(ROUTE)
    async def get_preview(request):
        return web.json_response({"server_switch_off": server_switch_off(), "setting": SETTING_ID,
                                  "event": EVENT, "sheet_node_id": SHEET_NODE_ID,
                                  "stored_settings": len(SETTINGS), "max_settings": SETTINGS.limit})

"""Source of the example workflows: writes api/NAME.api.json (API format) and NAME.json (UI format) for each graph.

The API files live in api/ so that ComfyUI's template browser (which lists workflows/*.json) shows only the UI ones.

    python workflows/build_workflows.py --api-only                      # API format only, no ComfyUI needed
    python workflows/build_workflows.py --object-info http://127.0.0.1:8188   # also the UI format
    python workflows/build_workflows.py --object-info object_info.json
    python workflows/build_workflows.py --inputs                        # (re)make workflows/inputs/ (PIL + PyAV)

The UI format needs each node's widget order, which only ComfyUI knows: it is read from a running server's
/object_info (or a saved copy). Graphs are defined once, below; edit them here, not in the JSON files.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"
EXAMPLE_IMAGE = "i2vgen_example.png"
EXAMPLE_VIDEO = "i2vgen_example.mp4"


sys.path.insert(0, str(HERE.parent))  # the pack's own core (importing the catalog needs no torch)
from i2vgen_core.weights import catalog  # noqa: E402  the one table of model files
#: Loader nodes and the widget holding their file: they carry ComfyUI's properties.models (name, url, directory),
#: so that opening a workflow without the files offers the downloads (ComfyUI's missing-models dialog).
#: Pixels left free under each loader node for the on-node help about a missing file (about 6 rows of text).
HELP_ROOM = 80
MODEL_WIDGETS = {"I2VGenXLModelLoader": "unet_name", "CLIPLoader": "clip_name", "CLIPVisionLoader": "clip_name",
                 "VAELoader": "vae_name"}


def _repo(name: str) -> str:
    """The Hugging Face repository of a catalog file, as the notes cite it."""
    return catalog.file_named(name).repo


def _source(name: str) -> str:
    """'repository path-in-repository' of a catalog file, as the notes cite it."""
    return f"{_repo(name)} {catalog.file_named(name).path}"


UNET_I2VGEN_DIFFUSERS = catalog.file_for("unet", "i2vgen_xl", ".safetensors").name
UNET_I2VGEN_VGEN = catalog.file_for("unet", "i2vgen_xl", ".pth").name
UNET_MS_IMAGE2VIDEO = catalog.file_for("unet", "ms_image2video").name
UNET_MS_VID2VID = catalog.file_for("unet", "ms_vid2vid_xl").name
TEXT_ENCODER = catalog.file_for("text_encoder").name
CLIP_VISION = catalog.file_for("clip_vision").name
VAE = catalog.file_for("vae").name

PROMPT = "A small sailboat drifting on a calm sea at sunset, gentle waves, warm golden light, clouds slowly moving"
# VGen's default negative prompt (tools/modules/config.py) and MS-Vid2Vid-XL's prompt additions (utils/config.py).
NEGATIVE_I2VGEN = ("Distorted, discontinuous, Ugly, blurry, low resolution, motionless, static, disfigured, "
                   "disconnected limbs, Ugly faces, incomplete arms")
REFINER_SUFFIX = (", cinematic, High Contrast, highly detailed, unreal engine, taken using a Canon EOS R camera, "
                  "hyper detailed photo - realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous "
                  "detailing, skin pore detailing, hyper sharpness, perfect without deformations, Unreal Engine 5, "
                  "4k render")
NEGATIVE_REFINER = ("worst quality, normal quality, low quality, low res, blurry, text, watermark, logo, banner, "
                    "extra digits, cropped, jpeg artifacts, signature, username, error, sketch ,duplicate, ugly, "
                    "monochrome, horror, geometry, mutation, disgusting")


@dataclass
class Node:
    """One graph node: id, class, literal inputs and links (name -> (source id, output index))."""

    id: int
    class_type: str
    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, tuple[int, int]] = field(default_factory=dict)
    title: str | None = None


@dataclass
class Graph:
    """A workflow: nodes plus an explanatory note shown in the UI format."""

    name: str
    description: str
    nodes: list[Node]
    note: str = ""


# the loader's optional speed levers, at their defaults (explicit so the UI files carry every widget value)
LOADER_SPEED_DEFAULTS = {"fused_projections": True, "channels_last": False, "compile": "disabled",
                         "fused_kernels": False, "fp8_compute": False}
# the refine sampler's optional context windows, off (explicit for the same reason)
NO_CONTEXT_WINDOWS = {"context_frames": 0, "context_overlap": 8}


def _loader_inputs(unet: str) -> dict:
    return {"unet_name": unet, "weight_dtype": "auto", "attention": "auto", **LOADER_SPEED_DEFAULTS}


def _loaders(first_id: int, unet: str, *, clip: bool = True, vision: bool = True, title: str | None = None):
    nodes = [Node(first_id, "I2VGenXLModelLoader", _loader_inputs(unet), title=title)]
    if clip:
        nodes.append(Node(first_id + 1, "CLIPLoader", {"clip_name": TEXT_ENCODER, "type": "stable_diffusion",
                                                       "device": "default"}))
    if vision:
        nodes.append(Node(first_id + 2, "CLIPVisionLoader", {"clip_name": CLIP_VISION}))
    nodes.append(Node(first_id + 3, "VAELoader", {"vae_name": VAE}))
    return nodes


def _save(first_id: int, decode_from: int, fps_from: tuple[int, int], prefix: str, *, frames_per_batch: int = 2,
          drop_grey: bool = False, fps: float = 8.0):
    return [
        Node(first_id, "I2VGenXLVideoDecode", {"frames_per_batch": frames_per_batch, "tile": False, "tile_size": 512,
                                               "drop_grey_last_frame": drop_grey, "fps": fps},
             {"vae": (4, 0), "samples": (decode_from, 0)}),
        Node(first_id + 1, "CreateVideo", {"fps": fps}, {"images": (first_id, 0), "fps": fps_from}),
        Node(first_id + 2, "SaveVideo", {"filename_prefix": prefix, "format": "mp4", "codec": "h264"},
             {"video": (first_id + 1, 0)}),
    ]


def _i2vgen_base(unet: str, width: int, height: int, *, title: str | None = None) -> list:
    """Nodes 1-11 of the I2VGen-XL graphs: loaders, image, prompts, both encoders at `width`x`height`, Conditioning
    (16 frames, fps 16) and the I2VGen-XL Sampler (DDIM 50, cfg 9)."""
    return _loaders(1, unet, title=title) + [
        Node(5, "LoadImage", {"image": EXAMPLE_IMAGE}),
        Node(6, "CLIPTextEncode", {"text": PROMPT}, {"clip": (2, 0)}, title="Prompt"),
        Node(7, "CLIPTextEncode", {"text": NEGATIVE_I2VGEN}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(8, "I2VGenXLSemanticEncode", {"square_size": 1280}, {"clip_vision": (3, 0), "image": (5, 0)}),
        Node(9, "I2VGenXLDetailEncode", {"width": width, "height": height, "posterior": "sample", "seed": 8888},
             {"vae": (4, 0), "image": (5, 0)}),
        Node(10, "I2VGenXLConditioning", {"width": width, "height": height, "length": 16, "fps": 16,
                                          "batch_size": 1},
             {"positive": (6, 0), "negative": (7, 0), "clip_vision_output": (8, 0), "image_latent": (9, 0)}),
        Node(11, "I2VGenXLSampler", {"seed": 8888, "steps": 50, "cfg": 9.0, "sampler_name": "ddim",
                                     "scheduler": "ddim_uniform", "final_step": "original"},
             {"model": (1, 0), "positive": (10, 0), "negative": (10, 1), "latent_image": (10, 2)}),
    ]


def _refine_tail(first_id: int = 12, samples_from: int = 11, context: dict | None = None) -> list:
    """Five nodes from `first_id`: Latent Upscale of `samples_from` to 1280x720, the MS-Vid2Vid-XL loader, its
    prompts and the Refine Sampler (SDEdit from t=599, dpmpp_2m_sde 30 steps, cfg 7.5, rescale 0.2) with
    `context` windows (none by default)."""
    up, loader, pos, neg, refine = range(first_id, first_id + 5)
    return [
        Node(up, "I2VGenXLLatentUpscale", {"width": 1280, "height": 720, "mode": "pixel", "frames": 0,
                                           "frame_mode": "repeat", "snap_for_refiner": True, "frames_per_batch": 4},
             {"samples": (samples_from, 0), "vae": (4, 0)}),
        Node(loader, "I2VGenXLModelLoader", _loader_inputs(UNET_MS_VID2VID), title="Refiner: MS-Vid2Vid-XL"),
        Node(pos, "CLIPTextEncode", {"text": PROMPT + REFINER_SUFFIX}, {"clip": (2, 0)}, title="Refiner prompt"),
        Node(neg, "CLIPTextEncode", {"text": NEGATIVE_REFINER}, {"clip": (2, 0)}, title="Refiner negative prompt"),
        Node(refine, "I2VGenXLRefineSampler", {"seed": 666, "strength": 0.6, "steps": 30, "cfg": 7.5,
                                               "guidance_rescale": 0.2, "sampler_name": "dpmpp_2m_sde",
                                               "scheduler": "simple", **(context or NO_CONTEXT_WINDOWS)},
             {"model": (loader, 0), "positive": (pos, 0), "negative": (neg, 0), "latent_image": (up, 0)}),
    ]


def graph_image_to_video() -> Graph:
    """I2VGen-XL single stage: 1280x704, 16 frames, DDIM 50, cfg 9."""
    nodes = _i2vgen_base(UNET_I2VGEN_DIFFUSERS, 1280, 704) + _save(12, 11, (12, 1), "video/i2vgen_xl", drop_grey=True)
    return Graph("i2vgen_xl_image_to_video", "I2VGen-XL image to video, 1280x704, 16 frames (the released model)",
                 nodes, note=(
                     "## I2VGen-XL image to video\n"
                     "Single stage, as released: 1280x704, 16 frames, fps condition 16, DDIM 50 steps, cfg 9. "
                     "The video is written at 8 fps like the original, and the known grey last frame is dropped.\n\n"
                     "**Models** (ComfyUI/models/...):\n"
                     f"- diffusion_models/{UNET_I2VGEN_DIFFUSERS}: {_source(UNET_I2VGEN_DIFFUSERS)} "
                     f"(or {UNET_I2VGEN_VGEN})\n"
                     f"- text_encoders/{TEXT_ENCODER}: {_source(TEXT_ENCODER)}\n"
                     f"- clip_vision/{CLIP_VISION}: OpenCLIP ViT-H/14 "
                     f"(or i2vgen-xl {catalog.file_named(CLIP_VISION).path})\n"
                     f"- vae/{VAE}: {_source(VAE)}\n\n"
                     "Use the Semantic / Detail Encode nodes rather than CLIP Vision Encode / VAE Encode: they "
                     "resize the image the way the model was trained."))


def graph_cascade() -> Graph:
    """I2VGen-XL at 640x352, upscaled to 1280x720 and refined with MS-Vid2Vid-XL."""
    nodes = (_i2vgen_base(UNET_I2VGEN_VGEN, 640, 352, title="Base: I2VGen-XL") + _refine_tail()
             + _save(17, 16, (17, 1), "video/i2vgen_xl_cascade"))
    return Graph("i2vgen_xl_cascade", "I2VGen-XL at 640x352 refined to 1280x720 with MS-Vid2Vid-XL", nodes, note=(
        "## I2VGen-XL + MS-Vid2Vid-XL cascade\n"
        "The released I2VGen-XL is single-stage; this graph uses it as a fast low-resolution base (640x352) and "
        "refines the result with the ModelScope refinement model MS-Vid2Vid-XL at 1280x720 (SDEdit from t=599, "
        "dpmpp_2m_sde 30 steps, cfg 7.5, guidance rescale 0.2).\n\n"
        f"**Models**: diffusion_models/{UNET_I2VGEN_VGEN} (or the diffusers file), diffusion_models/{UNET_MS_VID2VID} "
        f"({_repo(UNET_MS_VID2VID)}), text_encoders/{TEXT_ENCODER}, clip_vision/{CLIP_VISION}, vae/{VAE}.\n\n"
        "MS-Vid2Vid-XL needs a width that is a multiple of 64 and a height with height/8 = 2 (mod 8): 720 works, "
        "704 does not. Latent Upscale snaps to such sizes."))


def graph_ms_cascade() -> Graph:
    """MS-Image2Video 448x256 32 frames -> MS-Vid2Vid-XL 1280x720 (the ModelScope two-stage release)."""
    nodes = _loaders(1, UNET_MS_IMAGE2VIDEO, title="Base: MS-Image2Video") + [
        Node(5, "LoadImage", {"image": EXAMPLE_IMAGE}),
        Node(8, "I2VGenXLSemanticEncode", {"square_size": 448}, {"clip_vision": (3, 0), "image": (5, 0)}),
        Node(10, "I2VGenXLConditioning", {"width": 448, "height": 256, "length": 32, "fps": 8, "batch_size": 1},
             {"clip_vision_output": (8, 0)}),
        Node(11, "I2VGenXLSampler", {"seed": 666, "steps": 50, "cfg": 3.0, "sampler_name": "ddim",
                                     "scheduler": "ddim_uniform", "final_step": "original"},
             {"model": (1, 0), "positive": (10, 0), "negative": (10, 1), "latent_image": (10, 2)}),
    ] + _refine_tail() + _save(17, 16, (17, 1), "video/ms_image2video_cascade")
    return Graph("ms_image2video_cascade", "MS-Image2Video 448x256 (32 frames) refined to 1280x720 by MS-Vid2Vid-XL",
                 nodes, note=(
                     "## MS-Image2Video + MS-Vid2Vid-XL (ModelScope I2VGen-XL cascade)\n"
                     "Stage 1: MS-Image2Video, CLIP image conditioning only (no text), 448x256, 32 frames, fps 8, "
                     "DDIM 50, cfg 3. Stage 2: MS-Vid2Vid-XL refines at 1280x720 with a text prompt.\n\n"
                     f"**Models**: diffusion_models/{UNET_MS_IMAGE2VIDEO} ({_repo(UNET_MS_IMAGE2VIDEO)}), "
                     f"diffusion_models/{UNET_MS_VID2VID} ({_repo(UNET_MS_VID2VID)}), text_encoders/{TEXT_ENCODER}, "
                     f"clip_vision/{CLIP_VISION}, vae/{VAE}."))


def graph_refine_video() -> Graph:
    """Refine an existing video with MS-Vid2Vid-XL at 1280x720."""
    nodes = _loaders(1, UNET_MS_VID2VID, vision=False, title="Refiner: MS-Vid2Vid-XL") + [
        Node(5, "LoadVideo", {"file": EXAMPLE_VIDEO}),
        Node(6, "GetVideoComponents", {}, {"video": (5, 0)}),
        Node(7, "I2VGenXLVideoEncode", {"width": 1280, "height": 720, "crop": "disabled", "frames_per_batch": 4},
             {"vae": (4, 0), "images": (6, 0)}),
        Node(8, "CLIPTextEncode", {"text": PROMPT + REFINER_SUFFIX}, {"clip": (2, 0)}, title="Prompt"),
        Node(9, "CLIPTextEncode", {"text": NEGATIVE_REFINER}, {"clip": (2, 0)}, title="Negative prompt"),
        Node(10, "I2VGenXLRefineSampler", {"seed": 666, "strength": 0.6, "steps": 30, "cfg": 7.5,
                                           "guidance_rescale": 0.2, "sampler_name": "dpmpp_2m_sde",
                                           "scheduler": "simple", **NO_CONTEXT_WINDOWS},
             {"model": (1, 0), "positive": (8, 0), "negative": (9, 0), "latent_image": (7, 0)}),
    ] + _save(11, 10, (6, 2), "video/refined")
    return Graph("refine_video", "Refine an existing video to 1280x720 with MS-Vid2Vid-XL", nodes, note=(
        "## Refine a video with MS-Vid2Vid-XL\n"
        "Loads a video, resizes it to 1280x720 in pixel space, VAE-encodes it, noises it to strength 0.6 "
        "(t=599) and denoises with a text prompt describing the video. Lower strength keeps more of the input. "
        "The refiner was trained on 32-frame clips.\n\n"
        f"**Models**: diffusion_models/{UNET_MS_VID2VID} ({_repo(UNET_MS_VID2VID)}), text_encoders/{TEXT_ENCODER}, "
        f"vae/{VAE}."))


def _extend(node_id: int, previous: int, seed: int) -> Node:
    return Node(node_id, "I2VGenXLExtend", {"seed": seed, "steps": 50, "cfg": 9.0, "sampler_name": "ddim",
                                            "scheduler": "ddim_uniform", "length": 16, "fps": 16,
                                            "color_match": "mean_std", "handoff": "latent", "square_size": 1280},
                {"samples": (previous, 0), "clip_vision": (3, 0), "vae": (4, 0), "model": (1, 0),
                 "positive": (6, 0), "negative": (7, 0)}, title=f"Extend {node_id - 11}")


def graph_long_video() -> Graph:
    """I2VGen-XL 16 frames, extended 3 times (61 frames), refined to 1280x720 in 32-frame windows."""
    nodes = (_i2vgen_base(UNET_I2VGEN_VGEN, 640, 352, title="Base: I2VGen-XL")
             + [_extend(12, 11, 1), _extend(13, 12, 2), _extend(14, 13, 3)]
             + _refine_tail(15, 14, {"context_frames": 32, "context_overlap": 8})
             + _save(20, 19, (20, 1), "video/long_video"))
    return Graph("long_video", "Long video: I2VGen-XL extended 3 times (61 frames), refined in 32-frame windows",
                 nodes, note=(
                     "## Long video: extend, then refine in windows\n"
                     "I2VGen-XL makes 16 frames at 640x352; three **I2VGen-XL Extend** nodes each continue from the "
                     "last frame with a new 16-frame clip whose first frame (the conditioning frame again) is "
                     "dropped: 16 + 3 x 15 = 61 frames. Each Extend can take its own prompt and seed; colour matching "
                     "keeps every clip's colour and contrast on the first clip's, and the 'latent' hand-off uses the "
                     "last latent frame directly (no VAE round trip).\n\n"
                     "The 61 frames are upscaled to 1280x720 and refined by MS-Vid2Vid-XL with **context_frames 32, "
                     "context_overlap 8**: ComfyUI's context-window handler runs the refiner on overlapping 32-frame "
                     "windows (cross-faded), so memory is that of one 32-frame window at any length.\n\n"
                     f"**Models**: diffusion_models/{UNET_I2VGEN_VGEN} (or the diffusers file), "
                     f"diffusion_models/{UNET_MS_VID2VID} ({_repo(UNET_MS_VID2VID)}), text_encoders/{TEXT_ENCODER}, "
                     f"clip_vision/{CLIP_VISION}, vae/{VAE}."))


GRAPHS = (graph_image_to_video, graph_cascade, graph_ms_cascade, graph_refine_video, graph_long_video)


# ------------------------------------------------------------------------------------------ API format
def to_api(graph: Graph) -> dict:
    """The /prompt body's "prompt" object."""
    out = {}
    for n in graph.nodes:
        inputs: dict[str, Any] = dict(n.values)
        for name, (src, slot) in n.links.items():
            inputs[name] = [str(src), slot]
        out[str(n.id)] = {"class_type": n.class_type, "inputs": inputs,
                          "_meta": {"title": n.title or n.class_type}}
    return out


# ------------------------------------------------------------------------------------------ UI format
def _spec_type(spec: list) -> Any:
    return spec[0]


def _is_widget(spec: list) -> bool:
    t = _spec_type(spec)
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput"):
        return False
    return isinstance(t, list) or t in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def _socket_type(spec: list) -> str:
    t = _spec_type(spec)
    return "COMBO" if isinstance(t, list) else t


def _depths(graph: Graph) -> dict[int, int]:
    by_id = {n.id: n for n in graph.nodes}
    memo: dict[int, int] = {}

    def depth(i: int) -> int:
        if i not in memo:
            srcs = [s for s, _ in by_id[i].links.values()]
            memo[i] = 1 + max((depth(s) for s in srcs), default=-1)
        return memo[i]

    return {n.id: depth(n.id) for n in graph.nodes}


def _node_height(info: dict, n: Node) -> float:
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    widgets = sum(1 for name, spec in inputs.items() if _is_widget(spec))
    sockets = max(len(inputs) - widgets + sum(1 for k in n.links if k in inputs and _is_widget(inputs[k])),
                  len(info["output"]))
    h = 30 + 22 * sockets + 26 * widgets
    if n.class_type in ("LoadImage", "LoadVideo"):
        h += 280
    if n.class_type == "CLIPTextEncode":
        h += 110
    if n.class_type == "SaveVideo":
        h += 340
    return h


def to_ui(graph: Graph, object_info: dict) -> dict:
    """The frontend's workflow format (version 0.4) for `graph`, widget order taken from /object_info."""
    depths = _depths(graph)
    order = {n.id: i for i, n in enumerate(sorted(graph.nodes, key=lambda n: (depths[n.id], n.id)))}
    links: list[list] = []
    link_ids: dict[tuple[int, str], int] = {}
    for n in sorted(graph.nodes, key=lambda n: n.id):
        for name, (src, slot) in n.links.items():
            info = object_info[next(m.class_type for m in graph.nodes if m.id == src)]
            link_id = len(links) + 1
            links.append([link_id, src, slot, n.id, None, info["output"][slot]])
            link_ids[(n.id, name)] = link_id
    column_y: dict[int, float] = {}
    ui_nodes = []
    for n in sorted(graph.nodes, key=lambda n: n.id):
        if n.class_type not in object_info:
            raise KeyError(f"{n.class_type} is not in /object_info: is the I2VGen-XL package loaded?")
        info = object_info[n.class_type]
        required = info["input"].get("required", {})
        optional = info["input"].get("optional", {})
        names = info.get("input_order", {}).get("required", list(required)) + \
            info.get("input_order", {}).get("optional", list(optional))
        specs = {**required, **optional}
        unknown = set(n.values) | set(n.links)
        unknown -= set(specs)
        if unknown:
            raise KeyError(f"{graph.name}: node {n.id} ({n.class_type}) has no input(s) {sorted(unknown)}")
        inputs, widgets = [], []
        for name in names:
            spec = specs[name]
            widget = _is_widget(spec)
            entry: dict[str, Any] = {"name": name, "type": _socket_type(spec)}
            if name in optional:
                entry["shape"] = 7
            if widget:
                if name not in n.values:
                    raise KeyError(f"{graph.name}: node {n.id} ({n.class_type}) needs a value for widget {name!r}")
                widgets.append(n.values[name])
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if opts.get("control_after_generate"):
                    widgets.append("fixed")
                if opts.get("image_upload") or opts.get("video_upload"):
                    widgets.append("image")
                if name in n.links:
                    entry["widget"] = {"name": name}
                    entry["link"] = link_ids[(n.id, name)]
                    inputs.append(entry)
            else:
                entry["link"] = link_ids.get((n.id, name))
                inputs.append(entry)
        for slot, entry in enumerate(inputs):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot
        outputs = []
        for slot, (otype, oname) in enumerate(zip(info["output"], info["output_name"])):
            outputs.append({"name": oname, "type": otype, "slot_index": slot,
                            "links": [l[0] for l in links if l[1] == n.id and l[2] == slot]})
        col = depths[n.id]
        y = column_y.get(col, 60.0)
        height = _node_height(info, n)
        # under a loader: room for the help js/model_help.js draws (growing the node) when its file is missing
        column_y[col] = y + height + 40 + (HELP_ROOM if n.class_type in MODEL_WIDGETS else 0)
        node = {"id": n.id, "type": n.class_type, "pos": [60 + 400 * col, y], "size": [340, height], "flags": {},
                "order": order[n.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": n.class_type}, "widgets_values": widgets}
        if n.class_type in MODEL_WIDGETS:
            node["properties"]["models"] = catalog.workflow_models([n.values[MODEL_WIDGETS[n.class_type]]])
        if n.title:
            node["title"] = n.title
        ui_nodes.append(node)
    next_id = max(n.id for n in graph.nodes) + 1
    if graph.note:
        ui_nodes.append({"id": next_id, "type": "MarkdownNote", "pos": [60, -420], "size": [720, 380], "flags": {},
                         "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [], "title": "About",
                         "properties": {}, "widgets_values": [graph.note], "color": "#432", "bgcolor": "#653"})
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"i2vgen-xl/{graph.name}")), "revision": 0,
            "last_node_id": next_id, "last_link_id": len(links), "nodes": ui_nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 0.7, "offset": [100, 480]}}, "version": 0.4}


def load_object_info(source: str) -> dict:
    """/object_info from a server URL or a saved JSON file."""
    if source.startswith("http://") or source.startswith("https://"):
        with urllib.request.urlopen(source.rstrip("/") + "/object_info", timeout=60) as resp:
            return json.loads(resp.read())
    return json.loads(Path(source).read_text())


# ------------------------------------------------------------------------------------------ example inputs
def make_example_image(path: Path, width: int = 640, height: int = 360) -> None:
    """A synthetic sunset seascape (sky gradient, sun, sea, sailboat): our own, no downloaded image."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    horizon = 0.58 * height
    t = np.clip(y / horizon, 0, 1)[..., None]
    sky = (1 - t) * np.array([40, 70, 150]) + t * np.array([250, 160, 80])
    sea_t = np.clip((y - horizon) / (height - horizon), 0, 1)[..., None]
    sea = (1 - sea_t) * np.array([200, 110, 70]) + sea_t * np.array([20, 40, 80])
    sea = sea + 18 * np.sin(x[..., None] / 9.0 + 3 * np.sin(y[..., None] / 5.0)) * (y[..., None] > horizon)
    img = np.where((y > horizon)[..., None], sea, sky)
    sun = (x - 0.68 * width) ** 2 + (y - 0.5 * height) ** 2 < (0.07 * height) ** 2
    img[sun & (y < horizon)] = [255, 225, 150]
    glow = np.exp(-((x - 0.68 * width) ** 2 + (y - 0.5 * height) ** 2) / (2 * (0.2 * height) ** 2))[..., None]
    img = img + 60 * glow * (y < horizon)[..., None]
    bx, by = 0.3 * width, horizon + 0.12 * height
    hull = (np.abs(x - bx) < 0.07 * width - (y - by) * 0.8) & (y > by) & (y < by + 0.035 * height)
    sail = (x > bx - 0.002 * width) & (x < bx + (by - y) * 0.55) & (y < by) & (y > by - 0.22 * height)
    img[hull] = [60, 30, 20]
    img[sail] = [235, 230, 215]
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, optimize=True)


def make_example_video(path: Path, image: Path, frames: int = 16, fps: int = 8, width: int = 256,
                       height: int = 144) -> None:
    """A short h264 clip panning over the example image (for the refine_video workflow)."""
    import av
    import numpy as np
    from PIL import Image

    src = Image.open(image).convert("RGB")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "28", "preset": "veryslow"}
        for i in range(frames):
            zoom = 1.0 + 0.25 * i / max(1, frames - 1)
            cw, ch = src.width / zoom, src.height / zoom
            left = (src.width - cw) * (0.3 + 0.4 * i / max(1, frames - 1))
            top = (src.height - ch) / 2
            frame = src.resize((width, height), Image.BICUBIC, box=(left, top, left + cw, top + ch))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Write the workflow files (and optionally the example inputs)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--object-info", help="server URL or saved /object_info JSON (needed for the UI format)")
    ap.add_argument("--api-only", action="store_true", help="write only NAME.api.json")
    ap.add_argument("--inputs", action="store_true", help="also (re)make workflows/inputs/ (needs PIL and PyAV)")
    ap.add_argument("--out", default=str(HERE), help="output folder (default: this folder)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.inputs:
        INPUTS.mkdir(exist_ok=True)
        make_example_image(INPUTS / EXAMPLE_IMAGE)
        make_example_video(INPUTS / EXAMPLE_VIDEO, INPUTS / EXAMPLE_IMAGE)
        print(f"wrote {INPUTS / EXAMPLE_IMAGE} and {INPUTS / EXAMPLE_VIDEO}")
    info = None
    if not args.api_only:
        if not args.object_info:
            ap.error("--object-info is needed for the UI format (or pass --api-only)")
        info = load_object_info(args.object_info)
    for make in GRAPHS:
        graph = make()
        (out / "api").mkdir(parents=True, exist_ok=True)
        (out / "api" / f"{graph.name}.api.json").write_text(json.dumps(to_api(graph), indent=2) + "\n")
        if info is not None:
            (out / f"{graph.name}.json").write_text(json.dumps(to_ui(graph, info), indent=2) + "\n")
        print(f"wrote {graph.name}" + (" (+ UI format)" if info is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

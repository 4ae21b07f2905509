"""The memory estimate before a run: GET routes js/estimate.js asks while the graph is edited, answered by the same
code the nodes run (nodes/encode.py:conditioning_estimate, nodes/sampling.py:refine_estimate), with a run that
can never fit given as a WARNING line rather than refused."""

from __future__ import annotations

from ..i2vgen_core.sizes import pixel_size_error
from .common import server_routes
from .encode import I2VGenXLConditioning, conditioning_estimate
from .memory_ui import loader_settings
from .sampling import I2VGenXLRefineSampler, refine_estimate

CONDITIONING_ROUTE = "/i2vgen-xl/memory_estimate"
REFINE_ROUTE = "/i2vgen-xl/memory_estimate/refine"
#: The refine estimate's video length limit: Extend chains make videos longer than one node's 1024 frames; far past
#: any of them, the estimate's arithmetic would leave floating point.
MAX_VIDEO_FRAMES = 1 << 20


def widget_value(query, name: str, widget: tuple, default=None):
    """`query[name]` read as the node widget `widget` ((type, options) from INPUT_TYPES) takes it: a finite number
    within the widget's min and max, else a ValueError naming the range; `default` when the query has no `name`."""
    kind, options = widget
    raw = query.get(name, default)
    try:
        value = int(raw) if kind == "INT" else float(raw)
    except (TypeError, ValueError, OverflowError):  # missing, not a number, or past int()'s digit limit
        value = None
    if value is None or not options["min"] <= value <= options["max"]:  # NaN fails the comparison too
        what = "an integer" if kind == "INT" else "a number"
        raise ValueError(f"{name} must be {what} from {options['min']} to {options['max']}")
    return value


def pixel_size(query, minimum: int) -> tuple[int, int]:
    """(width, height) from `query`, checked by the size rule (i2vgen_core.sizes) or a ValueError saying why."""
    try:
        width, height = int(query["width"]), int(query["height"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("expected integer width and height") from None
    problem = pixel_size_error(width, height, minimum=minimum)
    if problem:
        raise ValueError(problem)
    return width, height


def conditioning_query_estimate(query) -> list[str]:
    """The Conditioning node's estimate from `query`: width, height, length, batch_size and image_latent /
    clip_vision_output (1 when linked), as strings; each number within its widget's range."""
    width, height = pixel_size(query, minimum=64)
    widgets = I2VGenXLConditioning.INPUT_TYPES()["required"]
    length = widget_value(query, "length", widgets["length"], default=16)
    batch = widget_value(query, "batch_size", widgets["batch_size"], default=1)
    return conditioning_estimate(width=width, height=height, length=length, batch=batch,
                                 has_image_latent=query.get("image_latent") == "1",
                                 has_clip_vision=query.get("clip_vision_output") == "1", refuse=False)


def refine_query_estimate(query) -> list[str]:
    """The Refine Sampler's estimate from `query`: the video (width, height, frames up to MAX_VIDEO_FRAMES,
    batch_size in the Conditioning node's range), its own context_frames and cfg, and its model loader's unet_name,
    weight_dtype and attention (strings)."""
    width, height = pixel_size(query, minimum=16)
    video = I2VGenXLConditioning.INPUT_TYPES()["required"]
    sampler = I2VGenXLRefineSampler.INPUT_TYPES()
    frames = widget_value(query, "frames", ("INT", {"min": 1, "max": MAX_VIDEO_FRAMES}))
    batch = widget_value(query, "batch_size", video["batch_size"], default=1)
    context_frames = widget_value(query, "context_frames", sampler["optional"]["context_frames"], default=0)
    cfg = widget_value(query, "cfg", sampler["required"]["cfg"], default=7.5)
    settings = loader_settings(query.get("unet_name", ""), query.get("weight_dtype", "auto"),
                               query.get("attention", "auto"))
    return refine_estimate(width=width, height=height, frames=frames, batch=batch, context_frames=context_frames,
                           cfg=cfg, settings=settings, refuse=False)


def register_routes() -> None:
    """GET CONDITIONING_ROUTE and REFINE_ROUTE: {"lines": [...]}, or {"error"} with status 400."""
    found = server_routes()
    if found is None:
        return
    routes, web = found

    def answer(estimate, request):
        try:
            return web.json_response({"lines": estimate(request.rel_url.query)})
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)

    @routes.get(CONDITIONING_ROUTE)
    async def conditioning(request):
        return answer(conditioning_query_estimate, request)

    @routes.get(REFINE_ROUTE)
    async def refine(request):
        return answer(refine_query_estimate, request)

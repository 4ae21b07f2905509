"""The memory estimate before a run: GET routes js/estimate.js asks while the graph is edited, answered by the same
code the nodes run (nodes/encode.py:conditioning_estimate, nodes/sampling.py:refine_estimate), with a run that
can never fit given as a WARNING line rather than refused."""

from __future__ import annotations

from ..i2vgen_core.sizes import pixel_size_error
from .common import server_routes
from .encode import conditioning_estimate
from .memory_ui import loader_settings
from .sampling import refine_estimate

CONDITIONING_ROUTE = "/i2vgen-xl/memory_estimate"
REFINE_ROUTE = "/i2vgen-xl/memory_estimate/refine"


def conditioning_query_estimate(query) -> list[str]:
    """The Conditioning node's estimate from `query`: width, height, length, batch_size and image_latent /
    clip_vision_output (1 when linked), as strings."""
    try:
        width, height = int(query["width"]), int(query["height"])
        length, batch = int(query.get("length", 16)), int(query.get("batch_size", 1))
    except (KeyError, TypeError, ValueError):
        raise ValueError("expected integer width, height, length and batch_size") from None
    problem = pixel_size_error(width, height)
    if problem:
        raise ValueError(problem)
    if length < 1 or batch < 1:
        raise ValueError("length and batch_size must be at least 1")
    return conditioning_estimate(width=width, height=height, length=length, batch=batch,
                                 has_image_latent=query.get("image_latent") == "1",
                                 has_clip_vision=query.get("clip_vision_output") == "1", refuse=False)


def refine_query_estimate(query) -> list[str]:
    """The Refine Sampler's estimate from `query`: the video (width, height, frames, batch_size), its own
    context_frames and cfg, and its model loader's unet_name, weight_dtype and attention (strings)."""
    try:
        width, height = int(query["width"]), int(query["height"])
        frames, batch = int(query["frames"]), int(query.get("batch_size", 1))
        context_frames, cfg = int(query.get("context_frames", 0)), float(query.get("cfg", 7.5))
    except (KeyError, TypeError, ValueError):
        raise ValueError("expected integer width, height, frames, batch_size, context_frames and a number cfg") \
            from None
    problem = pixel_size_error(width, height, minimum=16)
    if problem:
        raise ValueError(problem)
    if frames < 1 or batch < 1:
        raise ValueError("frames and batch_size must be at least 1")
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

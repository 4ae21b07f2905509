"""Missing-model help: which file to get, from which public repository, into which ComfyUI/models/ folder.

Data from i2vgen_core.weights.catalog (the one table); GET /i2vgen-xl/model_files serves it to js/model_help.js, which
shows it on loader nodes whose file list is empty or whose chosen file is missing, before a run.
"""

from __future__ import annotations

from ..i2vgen_core.config import VARIANT_NAMES
from ..i2vgen_core.weights.catalog import MODEL_FILES, missing_unet_message
from .common import server_routes

ROUTE = "/i2vgen-xl/model_files"


def unet_name_problem(name, available: list[str]) -> str | None:
    """The loader's validation: None when `name` is listed, else what to download and where."""
    if isinstance(name, str) and name in available:
        return None
    return missing_unet_message(name if isinstance(name, str) and name else None)


def register_routes() -> None:
    """GET /i2vgen-xl/model_files: the table as JSON."""
    found = server_routes()
    if found is None:
        return
    routes, web = found

    @routes.get(ROUTE)
    async def model_files(request):
        return web.json_response({"files": [f.as_dict() for f in MODEL_FILES], "variants": VARIANT_NAMES})

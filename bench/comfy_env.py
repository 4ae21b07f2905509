"""Import a ComfyUI work tree (CPU) and this package the way ComfyUI loads custom nodes, for the benchmarks that
measure the ComfyUI path in-process (run them with ComfyUI's Python)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup(comfy_root: str):
    """Import ComfyUI from `comfy_root` with --cpu, then this repository as the package ``i2vgen_pkg``; that module."""
    if "i2vgen_pkg" in sys.modules:
        return sys.modules["i2vgen_pkg"]
    sys.path.insert(0, comfy_root)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (device selection reads the args)

    spec = importlib.util.spec_from_file_location("i2vgen_pkg", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["i2vgen_pkg"] = pkg
    spec.loader.exec_module(pkg)
    return pkg

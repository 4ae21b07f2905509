"""Only keeps the old command line ``python -m i2vgen_core.demo_weights ...`` working: it says on stderr that the
command is now ``python -m i2vgen_core demo-weights`` and runs that with the same arguments.

The code lives in :mod:`i2vgen_core.weights.demo`. This module defines nothing: importing a name from it
raises an ImportError naming that module, so an old import fails on its own line instead of being kept alive by a
re-export (which would also import torch).
"""

from __future__ import annotations

import sys

from . import __main__ as _cli

__getattr__ = _cli.moved_attribute("i2vgen_core.demo_weights", "i2vgen_core.weights.demo")

if __name__ == "__main__":
    sys.exit(_cli.run_moved("i2vgen_core.demo_weights", "demo-weights"))

"""Only keeps the old command line ``python -m i2vgen_core.encoder_files ...`` working: it says on stderr that the
command is now ``python -m i2vgen_core split-encoders`` and runs that with the same arguments.

The code lives in :mod:`i2vgen_core.weights.encoder_files`. This module defines nothing: importing a name from it
raises an ImportError naming that module, so an old import fails on its own line instead of being kept alive by a
re-export (which would also import torch).
"""

from __future__ import annotations

import sys

from . import __main__ as _cli

__getattr__ = _cli.moved_attribute("i2vgen_core.encoder_files", "i2vgen_core.weights.encoder_files")

if __name__ == "__main__":
    sys.exit(_cli.run_moved("i2vgen_core.encoder_files", "split-encoders"))

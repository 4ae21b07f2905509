"""Test-suite setup: make the tests' own helper modules (tests/support/: helpers, badfiles, reference_models)
importable by name from every test folder. Never the repo root: it is a ComfyUI custom-node package whose nodes/
folder would shadow ComfyUI's own top-level `nodes` module."""

import os
import sys
from pathlib import Path

# Triton decorates its own library functions when it is first imported; the CPU tests run its kernels in the
# interpreter, so it must be on before anything imports triton (tests/core/speed/test_kernels.py picks them per test).
os.environ.setdefault("TRITON_INTERPRET", "1")

SUPPORT = str(Path(__file__).parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)

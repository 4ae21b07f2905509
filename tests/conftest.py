"""Test-suite setup: make the tests' own helper modules importable. Never the repo root: it is a ComfyUI custom-node
package whose nodes/ folder would shadow ComfyUI's own top-level `nodes` module."""

import os
import sys
from pathlib import Path

# Triton decorates its own library functions when it is first imported; the CPU tests run its kernels in the
# interpreter, so it must be on before anything imports triton (tests/test_kernels.py picks kernels per test).
os.environ.setdefault("TRITON_INTERPRET", "1")

TESTS = str(Path(__file__).parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

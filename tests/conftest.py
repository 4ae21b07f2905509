"""Test-suite setup: make the tests' own helper modules importable. Never the repo root: it is a ComfyUI custom-node
package whose nodes/ folder would shadow ComfyUI's own top-level `nodes` module."""

import sys
from pathlib import Path

TESTS = str(Path(__file__).parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

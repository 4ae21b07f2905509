"""Test-suite setup: make the tests' own helper modules importable (never the repo root, see DESIGN.md)."""

import sys
from pathlib import Path

TESTS = str(Path(__file__).parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

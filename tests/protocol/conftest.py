"""Puts the repository root first on sys.path, so `import protocol` finds the package under test.

Run as `pytest` (not `python -m pytest`) the root is not on sys.path, and this folder, named
`protocol` too, would otherwise be picked up as an empty namespace package.
"""

import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [REPO_ROOT]:
    sys.path.insert(0, REPO_ROOT)

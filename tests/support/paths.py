"""Where things are: the repository, the tests, the shared datasets beside the clone."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
SHARED_DIR = REPO_ROOT.parent / "shared"
CAT_DATASET = SHARED_DIR / "datasets" / "catvnoncat.h5"

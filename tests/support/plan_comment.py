"""Import .github/scripts/plan_comment.py (a script, not a package) for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / ".github" / "scripts" / "plan_comment.py"


def load():
    spec = importlib.util.spec_from_file_location("plan_comment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module

"""What the image ships of the package: trainer/ minus what .dockerignore leaves out, compiled as the
Dockerfile compiles it. Used by the shipped-modules test and by the bench's cold-start figure."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGE = REPO_ROOT / "trainer"
CACHES = ("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".hypothesis")
# The Dockerfile's RUN line after COPY trainer/ (tests/infra/images/test_shipped_modules.py checks they agree).
COMPILE_ARGS = ("-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash")


def excluded_paths() -> list[str]:
    """The .dockerignore lines that leave parts of trainer/ out (paths relative to the repository)."""
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    return [line.rstrip("/") for line in lines if line.startswith("trainer/")]


def is_shipped(relative: str) -> bool:
    return not any(
        relative == p or relative.startswith(p + "/") or fnmatch.fnmatch(relative, p) for p in excluded_paths()
    )


def shipped_files() -> list[Path]:
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        cached = any(fnmatch.fnmatch(part, c) for part in path.parts for c in CACHES)
        if path.is_file() and not cached and is_shipped(relative):
            out.append(path)
    return out


def shipped_modules() -> list[str]:
    modules = []
    for path in shipped_files():
        if path.suffix == ".py":
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules.append(".".join(parts))
    return modules


def lay_out(task_root: Path, python: str) -> None:
    """/var/task as the image has it: the shipped files, then compiled by the image's Python."""
    if task_root.exists():
        shutil.rmtree(task_root)
    for path in shipped_files():
        target = task_root / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    subprocess.run([python, *COMPILE_ARGS, str(task_root / "trainer")], check=True, timeout=300)

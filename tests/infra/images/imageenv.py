"""The Lambda image's file system, without Docker.

`build()` does what images/trainer/Dockerfile does, on this machine:

  build stage   python3.12 -m pip install <PIP_INSTALL_ARGS> --target <root>/opt/deps -r requirements.lock
  runtime       <root>/var/task/trainer  (COPY trainer/ /var/task/trainer/, minus .dockerignore'd caches)
                PYTHONPATH=/opt/deps:/var/task, ENTRYPOINT python -m awslambdaric

The base interpreter is a fresh Python 3.12 venv with nothing installed (like the slim image's empty
site-packages), so a dependency missing from the lock cannot be papered over by a package that
happens to be installed on the machine. The dependency folder is cached per (lock hash, Python
version, pip arguments) under .build/image-env/, so a rerun reuses it and a fresh clone builds it.

Run as a script (`make image-env`) it builds and prints the folder and its size.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
LOCK_FILE = REPO_ROOT / "requirements.lock"
DOCKERFILE = REPO_ROOT / "images" / "trainer" / "Dockerfile"
CACHE_DIR = REPO_ROOT / ".build" / "image-env"
IMAGE_PYTHON = "3.12"

# The flags of the Dockerfile's `pip install` (tests/infra/images checks that the two agree).
PIP_INSTALL_ARGS = ("--require-hashes", "--no-deps", "--only-binary=:all:")
# What .dockerignore keeps out of the trainer/ copy.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".hypothesis")


def find_python312() -> str:
    """A CPython 3.12 interpreter: $LNN_IMAGE_PYTHON, python3.12 on PATH, or a pyenv-installed 3.12."""
    candidates: list[str] = []
    if os.environ.get("LNN_IMAGE_PYTHON"):
        candidates.append(os.environ["LNN_IMAGE_PYTHON"])
    on_path = shutil.which(f"python{IMAGE_PYTHON}")
    if on_path:
        candidates.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(
        glob.glob(os.path.join(pyenv_root, "versions", f"{IMAGE_PYTHON}.*", "bin", f"python{IMAGE_PYTHON}")),
        reverse=True,
    )
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == IMAGE_PYTHON:
            return candidate
    raise RuntimeError(
        f"no Python {IMAGE_PYTHON} found (the image's Python): put python{IMAGE_PYTHON} on PATH "
        f"(actions/setup-python, pyenv, deadsnakes) or set LNN_IMAGE_PYTHON"
    )


def python_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


@dataclass(frozen=True)
class ImageEnv:
    root: Path  # the image's file system: root/opt/deps, root/var/task
    python: Path  # the base interpreter (fresh 3.12 venv, nothing installed)
    deps: Path
    task_root: Path
    python_version: str
    deps_bytes: int
    trainer_bytes: int
    built_now: bool
    build_seconds: float

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The image's ENV lines, on a clean environment (nothing from this process leaks in)."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.root),
            "PYTHONPATH": f"{self.deps}{os.pathsep}{self.task_root}",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "LAMBDA_TASK_ROOT": str(self.task_root),
        }
        env.update(extra or {})
        return env

    def entrypoint(self, handler: str) -> list[str]:
        """ENTRYPOINT ["python", "-m", "awslambdaric"] + CMD [handler]."""
        return [str(self.python), "-m", "awslambdaric", handler]


def _build_deps(python: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="deps-", dir=target.parent))
    try:
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                *PIP_INSTALL_ARGS,
                "--target",
                str(staging / "deps"),
                "-r",
                str(LOCK_FILE),
            ],
            check=True,
            timeout=1800,
            env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
        )
        (staging / "deps").rename(target)  # atomic: a half-built folder is never reused
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build(root: Path | None = None) -> ImageEnv:
    """Build (or reuse) the dependency folder; lay out a fresh image root with the trainer package."""
    import time

    python = find_python312()
    version = python_version(python)
    key = hashlib.sha256(LOCK_FILE.read_bytes() + version.encode() + " ".join(PIP_INSTALL_ARGS).encode()).hexdigest()[
        :16
    ]
    cached = CACHE_DIR / f"py{version}-{key}"
    deps_dir = cached / "opt" / "deps"
    venv_dir = cached / "python"

    started = time.monotonic()
    built_now = False
    if not (deps_dir / "awslambdaric").is_dir():
        _build_deps(python, deps_dir)
        built_now = True
    if not (venv_dir / "bin" / "python").exists():
        # --without-pip: the base has an empty site-packages; everything comes from /opt/deps.
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv_dir)], check=True, timeout=300)
    build_seconds = time.monotonic() - started

    root = root or Path(tempfile.mkdtemp(prefix="lnn-image-"))
    (root / "opt").mkdir(parents=True, exist_ok=True)
    deps_link = root / "opt" / "deps"
    if not deps_link.exists():
        deps_link.symlink_to(deps_dir, target_is_directory=True)
    task_root = root / "var" / "task"
    if task_root.exists():
        shutil.rmtree(task_root)
    task_root.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "trainer", task_root / "trainer", ignore=IGNORED)

    return ImageEnv(
        root=root,
        python=venv_dir / "bin" / "python",
        deps=deps_link,
        task_root=task_root,
        python_version=version,
        deps_bytes=tree_size(deps_dir),
        trainer_bytes=tree_size(task_root),
        built_now=built_now,
        build_seconds=build_seconds,
    )


def main() -> int:
    env = build()
    print(f"image environment: Python {env.python_version}, deps {env.deps.resolve()}")
    print(f"  /opt/deps        {env.deps_bytes / 2**20:8.1f} MiB")
    print(f"  /var/task        {env.trainer_bytes / 2**20:8.1f} MiB")
    print(f"  (built now: {env.built_now}, {env.build_seconds:.1f} s)")
    shutil.rmtree(env.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

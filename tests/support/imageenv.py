"""The Lambda image's file system, without Docker.

`build()` does what images/trainer/Dockerfile does, on this machine, reading the Dockerfile and
.dockerignore rather than restating them:

  build stage   python3.12 -m pip install <PIP_INSTALL_ARGS> --target <root>/opt/deps -r requirements.lock
  runtime       every COPY from the build context in the runtime stage (COPY trainer/ /var/task/trainer/),
                with .dockerignore's rules applied as Docker applies them (last matching line wins,
                `!` lets back in), so the layout holds the runtime modules only; then the stage's
                `RUN python -m compileall ...` lines, run by the image's Python
                PYTHONPATH=/opt/deps:/var/task, ENTRYPOINT python -m awslambdaric

The base interpreter is a fresh Python 3.12 venv with nothing installed (like the slim image's empty
site-packages), so a dependency missing from the lock cannot be papered over by a package that
happens to be installed on the machine. The dependency folder is cached per (lock hash, Python
version, pip arguments) under .build/image-env/, so a rerun reuses it and a fresh clone builds it.

Run as a script (`make image-env`) it builds and prints the folder and its size.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = REPO_ROOT / "requirements.lock"
DOCKERFILE = REPO_ROOT / "images" / "trainer" / "Dockerfile"
CACHE_DIR = REPO_ROOT / ".build" / "image-env"
IMAGE_PYTHON = "3.12"

# The flags of the Dockerfile's `pip install` (tests/infra/images checks that the two agree).
PIP_INSTALL_ARGS = ("--require-hashes", "--no-deps", "--only-binary=:all:")
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image is."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from + 1 :]


def context_copies() -> list[tuple[str, str]]:
    """(source in the build context, destination in the image) of the runtime stage's COPY lines
    that copy from the context (COPY --from=<stage> copies the dependencies, which build() makes)."""
    workdir, out = "/", []
    for word, rest in runtime_stage():
        if word == "WORKDIR":
            workdir = os.path.join(workdir, rest)
        if word != "COPY":
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        *sources, destination = paths
        for source in sources:
            out.append((source, os.path.join(workdir, destination)))
    return out


def compile_commands() -> list[list[str]]:
    """The runtime stage's `RUN python -m compileall ...` lines, as argument lists."""
    return [
        shlex.split(rest) for word, rest in runtime_stage() if word == "RUN" and re.match(r"python -m compileall", rest)
    ]


def _ignore_rule(line: str) -> tuple[re.Pattern[str], bool]:
    """One .dockerignore line as a regular expression over context paths, and whether it lets back in.
    As Docker reads them: `*` and `?` stay within a path segment, `**` spans segments, and a rule
    matching a folder covers everything under it."""
    negated = line.startswith("!")
    pattern = os.path.normpath(line[1:] if negated else line).lstrip("/")
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex + "$"), negated


def ignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()] if DOCKERIGNORE.exists() else []
    return [_ignore_rule(line) for line in lines if line and not line.startswith("#")]


def is_ignored(relative: str, rules: list[tuple[re.Pattern[str], bool]] | None = None) -> bool:
    """Whether .dockerignore keeps a context path (relative, with /) out of the build context."""
    rules = ignore_rules() if rules is None else rules
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for regex, negated in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def shipped_files() -> list[tuple[Path, str]]:
    """(file in the repository, its path in the image) of every file the runtime stage copies from
    the build context: the COPY lines' sources, minus what .dockerignore leaves out."""
    rules, out = ignore_rules(), []
    for source, destination in context_copies():
        origin = REPO_ROOT / source
        files = sorted(p for p in origin.rglob("*") if p.is_file()) if origin.is_dir() else [origin]
        for path in files:
            relative = path.relative_to(REPO_ROOT).as_posix()
            if is_ignored(relative, rules):
                continue
            inside = path.relative_to(origin).as_posix() if origin.is_dir() else ""
            if origin.is_dir() or destination.endswith("/"):
                target = os.path.join(destination, inside or path.name)
            else:
                target = destination
            out.append((path, target))
    return out


def task_modules(task_root: Path) -> list[str]:
    """The Python modules of /var/task as laid out (a package's __init__ is the package)."""
    modules = []
    for path in sorted(task_root.rglob("*.py")):
        parts = list(path.relative_to(task_root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.append(".".join(parts))
    return modules


def lay_out(root: Path, python: str) -> Path:
    """The image's context copies under root (its /var/task and anything else they name), then its
    compile lines run by the image's Python. Returns root/var/task."""
    task_root = root / "var" / "task"
    if task_root.exists():
        shutil.rmtree(task_root)
    task_root.mkdir(parents=True)
    for path, target in shipped_files():
        inside_root = root / target.lstrip("/")
        inside_root.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, inside_root)
    for command in compile_commands():
        args = [root / a.lstrip("/") if a.startswith("/") else a for a in command[1:]]
        subprocess.run([python, *map(str, args)], check=True, timeout=300)
    return task_root


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
    """Build (or reuse) the dependency folder; lay out a fresh image root with what the image ships."""
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
    cached.mkdir(parents=True, exist_ok=True)
    # Test processes side by side (make test) may build it at once: the first builds, the others wait.
    with open(cached / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    task_root = lay_out(root, str(venv_dir / "bin" / "python"))

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

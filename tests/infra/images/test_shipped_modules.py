"""The image ships the runtime modules only (the handlers and what they import), and every one of
them imports in the image's environment: Python 3.12 with requirements.lock alone, nothing else.
The environment is imageenv's, laid out from the Dockerfile's COPY lines and .dockerignore."""

from __future__ import annotations

import json
import subprocess

from tests.support import imageenv
from tests.support.imageenv import ImageEnv

HANDLERS = ("trainer.handlers.launch", "trainer.handlers.trainer")


def _run(image_env: ImageEnv, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(image_env.python), "-c", code],
        capture_output=True,
        text=True,
        env=image_env.environ(),
        cwd=image_env.task_root,
        timeout=300,
    )


def test_every_shipped_module_imports_with_the_lock_alone(image_env: ImageEnv) -> None:
    modules = imageenv.task_modules(image_env.task_root)
    assert "trainer.handlers.trainer" in modules and "trainer.cli" not in modules
    code = f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\nprint('ok')"
    done = _run(image_env, code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_image_ships_exactly_what_the_handlers_import(image_env: ImageEnv) -> None:
    code = (
        "import sys, json\n"
        f"import {', '.join(HANDLERS)}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'trainer' or m.startswith('trainer.'))))"
    )
    done = _run(image_env, code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == imageenv.task_modules(image_env.task_root)
    task_root = image_env.task_root
    left = (
        "trainer/cli.py",
        "trainer/__main__.py",
        "trainer/local",
        "trainer/nn/monolithic.py",
        "trainer/parallel/reference.py",
    )
    for left_out in left:
        assert not (task_root / left_out).exists()
    # compiled in the image: nothing to compile at a cold start
    assert list((task_root / "trainer" / "handlers" / "__pycache__").glob("trainer.cpython-312.pyc"))


def test_the_layout_is_the_dockerfiles_copy_lines_minus_dockerignore(image_env: ImageEnv) -> None:
    assert imageenv.context_copies() == [("trainer/", "/var/task/trainer/")]
    assert [c[-1] for c in imageenv.compile_commands()] == ["/var/task/trainer"]
    laid_out = sorted(
        "/" + p.relative_to(image_env.root).as_posix()
        for p in image_env.task_root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert laid_out == sorted(target for _, target in imageenv.shipped_files())
    text = imageenv.DOCKERFILE.read_text()
    assert text.index("COPY trainer/") < text.index("compileall") < text.index("USER 10001")


def test_dockerignore_rules_read_as_docker_reads_them() -> None:
    rules = imageenv.ignore_rules()
    for kept in ("requirements.lock", "trainer/handlers/trainer.py", "trainer/nn/layers.py"):
        assert not imageenv.is_ignored(kept, rules), kept
    for left in (
        "tests/unit/nn/test_gradients.py",
        "README.md",
        "trainer/cli.py",
        "trainer/local/runner.py",
        "trainer/nn/monolithic.py",
        "trainer/nn/__pycache__/layers.cpython-312.pyc",
        "trainer/.ruff_cache/x",
    ):
        assert imageenv.is_ignored(left, rules), left
    # the last matching line decides, and `!` lets back in
    star, back = imageenv._ignore_rule("*"), imageenv._ignore_rule("!trainer/")
    assert imageenv.is_ignored("trainer/a.py", [star]) and not imageenv.is_ignored("trainer/a.py", [star, back])
    assert imageenv.is_ignored("trainer/a.py", [back, star])

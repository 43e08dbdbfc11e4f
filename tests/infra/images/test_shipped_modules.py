"""The image ships the runtime modules only (the handlers and what they import), and every one of
them imports in the image's environment: Python 3.12 with requirements.lock alone, nothing else."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import shipped
from imageenv import DOCKERFILE, ImageEnv

HANDLERS = ("trainer.handlers.launch", "trainer.handlers.trainer")


def _run(image_env: ImageEnv, task_root: Path, code: str) -> subprocess.CompletedProcess:
    env = image_env.environ({"PYTHONPATH": f"{image_env.deps}:{task_root}", "LAMBDA_TASK_ROOT": str(task_root)})
    return subprocess.run(
        [str(image_env.python), "-c", code], capture_output=True, text=True, env=env, cwd=task_root, timeout=300
    )


def test_every_shipped_module_imports_with_the_lock_alone(image_env: ImageEnv, tmp_path: Path) -> None:
    task_root = tmp_path / "var" / "task"
    shipped.lay_out(task_root, str(image_env.python))
    modules = shipped.shipped_modules()
    assert "trainer.handlers.trainer" in modules and "trainer.cli" not in modules
    code = f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\nprint('ok')"
    done = _run(image_env, task_root, code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_image_ships_exactly_what_the_handlers_import(image_env: ImageEnv, tmp_path: Path) -> None:
    task_root = tmp_path / "var" / "task"
    shipped.lay_out(task_root, str(image_env.python))
    code = (
        "import sys, json\n"
        f"import {', '.join(HANDLERS)}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'trainer' or m.startswith('trainer.'))))"
    )
    done = _run(image_env, task_root, code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == sorted(shipped.shipped_modules())
    for left_out in ("trainer/cli.py", "trainer/__main__.py", "trainer/local/runner.py"):
        assert not (task_root / left_out).exists()
    # compiled in the image: nothing to compile at a cold start
    assert list((task_root / "trainer" / "handlers" / "__pycache__").glob("trainer.cpython-312.pyc"))


def test_the_dockerfile_lays_out_the_package_as_the_tests_do() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY trainer/ /var/task/trainer/" in text
    assert "RUN python " + " ".join(shipped.COMPILE_ARGS) + " /var/task/trainer" in text
    assert text.index("COPY trainer/") < text.index("compileall") < text.index("USER 10001")

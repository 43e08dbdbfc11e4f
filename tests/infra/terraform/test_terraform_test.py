"""`terraform test`: the *.tftest.hcl files under terraform/tests, run with the mocked AWS provider.

The run names carry the original notes' General Notes items they cover; the parametrised test
below maps each item (as the issue phrases it) to the runs that prove it, so a renamed or deleted
run cannot silently drop an item.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.hcl import blocks
from tests.support.terraform import TERRAFORM_DIR, Terraform, explain

TESTS_DIR = TERRAFORM_DIR / "tests"

GENERAL_NOTES = {
    "1/6 function ARNs and topic ARN in the environment (no cycle)": [
        ("functions", "notes1_6_environment_has_the_arns_topic_and_redis_settings"),
    ],
    "2 SNS publish permission scoped to the topic": [("functions", "iam_least_privilege")],
    "3 ElastiCache permissions: none, the code only speaks Redis": [("functions", "iam_least_privilege")],
    "4 ElastiCache subnet group": [("cache", "note4_subnet_group_in_the_private_subnets")],
    "4 security group: 6379 only from the Lambdas' group, within the VPC": [
        ("network", "note4_6379_admitted_only_from_the_lambdas_group"),
    ],
    "5 Lambdas in the VPC": [("functions", "note5_functions_run_in_the_vpc")],
    "7 CloudWatch log retention 7 days": [
        ("functions", "note7_log_groups_keep_7_days_and_exist_before_the_functions"),
        ("network", "flow_logs_keep_7_days"),
    ],
    "trainer recursion allowed": [("functions", "trainer_recursion_allowed")],
}


@pytest.fixture(scope="module")
def test_results(
    terraform: Terraform, initialised_copy: Path, provider_env: dict[str, str]
) -> dict[tuple[str, str], str]:
    # Two `terraform test` processes side by side (CI's machines have two cores, and each run
    # block's plan keeps one busy): stack.tftest.hcl, whose every run plans the whole stack, and the
    # other files, each run one module's.
    files = sorted(f"tests/{path.name}" for path in TESTS_DIR.glob("*.tftest.hcl"))
    groups = [["tests/stack.tftest.hcl"], [f for f in files if f != "tests/stack.tftest.hcl"]]
    commands = [("test", "-json", "-no-color", *(f"-filter={f}" for f in group)) for group in groups]
    statuses: dict[tuple[str, str], str] = {}
    for result in terraform.run_side_by_side(commands, cwd=initialised_copy, env=provider_env, timeout=900):
        summary = None
        for line in result.stdout.splitlines():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            run = message.get("test_run")
            if message.get("type") == "test_run" and run and run.get("progress") == "complete":
                statuses[(Path(run["path"]).name.removesuffix(".tftest.hcl"), run["run"])] = run["status"]
            if message.get("type") == "test_summary":
                summary = message["test_summary"]
        assert summary is not None, explain(result)
        failed = {k: v for k, v in statuses.items() if v != "pass"}
        assert result.returncode == 0 and summary["status"] == "pass" and not failed, (
            f"failed runs: {failed}\n" + explain(result, limit=20000)
        )
    return statuses


def test_terraform_test_passes(test_results: dict[tuple[str, str], str]) -> None:
    files = {path.name.removesuffix(".tftest.hcl") for path in TESTS_DIR.glob("*.tftest.hcl")}
    assert files == {name for name, _ in test_results}, "every test file must have run"
    assert all(status == "pass" for status in test_results.values())
    written = sum(len(blocks(path.read_text(), "run")) for path in TESTS_DIR.glob("*.tftest.hcl"))
    assert len(test_results) == written >= 55, "every run block ran"


@pytest.mark.parametrize("note", sorted(GENERAL_NOTES))
def test_general_note_is_covered(note: str, test_results: dict[tuple[str, str], str]) -> None:
    for key in GENERAL_NOTES[note]:
        assert test_results.get(key) == "pass", f"{note}: run {key} missing or not passing"


def validated_variables(path: Path) -> list[str]:
    return [name for name, body in blocks(path.read_text(), "variable").items() if "validation {" in body]


def others_read(variables_file: Path, name: str) -> set[str]:
    """What a variable's block reads besides itself (its validation's other variables and locals)."""
    body = blocks(variables_file.read_text(), "variable")[name]
    return set(re.findall(r"\b(?:var|local)\.\w+", body)) - {f"var.{name}"}


def rejecting_runs(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """Each `rejects_bad_*` run of a test file: the variables it expects to fail, and those it sets."""
    runs = {}
    for name, body in blocks(text, "run").items():
        if not name.startswith("rejects_bad_"):
            continue
        failures = re.search(r"expect_failures = \[(.*?)\]", body, re.S)
        assert failures, name
        given = re.search(r"variables \{(.*?)\n  \}", body, re.S)
        runs[name] = (
            re.findall(r"var\.(\w+)", failures.group(1)),
            re.findall(r"^    (\w+)\s*=", given.group(1), re.M) if given else [],
        )
    return runs


@pytest.mark.parametrize(
    ("variables_file", "test_file"),
    [
        ("variables.tf", "stack"),
        *[
            (f"modules/{m}/variables.tf", m)
            for m in ("network", "cache", "storage", "notifications", "registry", "functions")
        ],
    ],
)
def test_every_validation_has_a_rejecting_run(
    variables_file: str, test_file: str, test_results: dict[tuple[str, str], str]
) -> None:
    """Every validated variable is expected to fail in exactly one passing `rejects_bad_*` run: its
    own (`rejects_bad_<name>`), or `rejects_bad_values`, which gives each variable it lists a bad
    value itself and holds only rules that read their own variable alone, so each failure listed
    there can come from that variable's value only."""
    variables = validated_variables(TERRAFORM_DIR / variables_file)
    # The root validates every value a user gives (test_static: validated once, where it enters).
    assert variables or variables_file != "variables.tf"
    runs = rejecting_runs((TESTS_DIR / f"{test_file}.tftest.hcl").read_text())
    expected = [name for failing, _ in runs.values() for name in failing]
    # No run expects a failure of a validation that is gone (it would fail, but say why here).
    assert sorted(expected) == sorted(variables), f"{variables_file}: one rejecting run per validated variable"
    for run, (failing, given) in runs.items():
        if run == "rejects_bad_values":
            assert sorted(failing) == sorted(given), f"{run}: each listed variable is given its bad value"
            for name in failing:
                read = others_read(TERRAFORM_DIR / variables_file, name)
                assert not read, f"{name}'s rule reads {sorted(read)}: it needs a rejects_bad_{name} run of its own"
        else:
            assert failing == [run.removeprefix("rejects_bad_")], run
        assert test_results.get((test_file, run)) == "pass", run

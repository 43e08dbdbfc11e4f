"""Session-wide real servers: one redis-server and one moto server for the whole test run."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path

from trainer.local.fleet import PINNED_X86_64

# The tests' own arithmetic (the monolithic references, the bench's rows) is the functions': the
# BLAS kernel and numpy features the functions pin, set before anything here loads numpy, which
# reads them once. Otherwise an in-process reference computes other bits than the chain it checks.
if platform.machine() == "x86_64":
    for _name, _value in PINNED_X86_64.items():
        os.environ.setdefault(_name, _value)

import pytest

from tests.support.paths import TESTS
from trainer.local.servers import MotoServer, RedisServer

# The tiers (tests/README.md): each test gets one marker, from where it lives, so that
# `pytest -m unit` is the quick loop and `pytest -m "not acceptance"` skips the long campaigns.
ACCEPTANCE_FILES = {
    "integration/test_up_down.py",
    "integration/test_chaos_chain.py",
    "integration/test_fault_campaign.py",
    "integration/test_control_plane_campaign.py",
    "integration/test_readme_usage.py",
    "infra/terraform/test_apply_cycle.py",
}
ACCEPTANCE_NAMES = ("make_demo",)


def within_tests(path: Path) -> str:
    """A test file's place below tests/, as the tiers and the groups name it."""
    return path.resolve().relative_to(TESTS).as_posix()


def tier_of(path: Path, name: str) -> str:
    where = within_tests(path)
    if where.startswith("unit/"):
        return "unit"
    if where.startswith("contract/"):  # each case twice: against its fake (unit) and its real server (cloud)
        return "unit" if "fake" in name.partition("[")[2].rstrip("]").split("-") else "cloud"
    if where in ACCEPTANCE_FILES or where.startswith("performance/") or any(n in name for n in ACCEPTANCE_NAMES):
        return "acceptance"
    return "infra" if where.startswith("infra/") else "cloud"


def pytest_configure(config: pytest.Config) -> None:
    from tests.support.fuzz import load_profile

    try:
        load_profile()  # LNN_HYPOTHESIS_PROFILE: ci (the default) or deep
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if gone := [where for where in LONGEST_FIRST if not (TESTS / where).is_file()]:
        raise pytest.UsageError(f"LONGEST_FIRST (tests/conftest.py) names files that are not there: {gone}")


def pytest_report_header(config: pytest.Config) -> str:
    from tests.support.fuzz import PROFILE_VARIABLE, examples

    return f"fuzz budgets: {PROFILE_VARIABLE}={'deep' if examples(0, 1) else 'ci'}"


def group_of(path: Path) -> str:
    """The process a test runs on, when `make test` runs test files side by side (pytest-xdist's
    loadgroup): a test file stays whole on one process, so its module-wide stacks are set up once.
    Each file works in copies of its own (terraform/ copied before `terraform init`, the image's
    dependency folder built once under a lock), so no two files need the same process."""
    return within_tests(path)


# The files that keep one process busy longest, longest first: xdist hands groups out in collection
# order (`--no-loadscope-reorder`), so these start first and the short files fill in around them,
# and no process is left with a long file to start at the end. Most of their time is waiting (the
# provider's polls in the apply cycle, Lambda's retries and leases in the campaigns), which is why
# `make test` runs more processes than the machine has cores.
LONGEST_FIRST = (
    "infra/terraform/test_apply_cycle.py",
    "integration/chain/test_chain.py",
    "integration/chain/test_cli.py",
    "integration/chain/test_sweeps.py",
    "integration/chain/test_concurrent_copies.py",
    "integration/chain/test_control_plane.py",
    "integration/parallel/test_parallel_lifecycle_on_lambda.py",
    "integration/parallel/test_parallel_sweep_on_lambda.py",
    "integration/test_fault_campaign.py",
    "performance/test_bench.py",
    "integration/test_readme_usage.py",
    "integration/test_control_plane_campaign.py",
    "integration/parallel/test_parallel_chaos_on_lambda.py",
)


def start_order(item: pytest.Item) -> tuple[int, str]:
    where = within_tests(item.path)
    return (LONGEST_FIRST.index(where) if where in LONGEST_FIRST else len(LONGEST_FIRST), where)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups given here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=start_order)  # stable: a file's tests keep their order
    for item in items:
        tier = tier_of(item.path, item.name)
        item.add_marker(tier)
        item.add_marker(pytest.mark.xdist_group(group_of(item.path)))
        item.user_properties.append(("tier", tier))  # travels with its reports to the controller


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """TLS only (its CA in `.ca_file`) and a password, as the ElastiCache group: tests use that path."""
    with RedisServer(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def aws_env(moto_server: MotoServer) -> Iterator[dict[str, str]]:
    """Point every boto3 client of this process at moto server, with dummy credentials."""
    values = {
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as env:
        for key, value in values.items():
            env.setenv(key, value)
        yield values


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker process (pytest-xdist) hands the campaigns' figures it gathered to the controller."""
    from tests.support.report import REPORT

    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["lnn_report"] = json.dumps(REPORT.state())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """The controller adds up its workers' figures for the summary."""
    from tests.support.report import REPORT

    if state := getattr(node, "workeroutput", {}).get("lnn_report"):
        REPORT.merge(json.loads(state))


def pytest_terminal_summary(terminalreporter) -> None:
    """Each tier's time; the fault-injection suite's counts (runs tried, faults injected, runs
    identical)."""
    from tests.support.report import REPORT, tier_times

    reports = [r for kind in terminalreporter.stats.values() for r in kind if isinstance(r, pytest.TestReport)]
    if times := tier_times(reports):
        terminalreporter.write_sep("-", "time by tier")
        terminalreporter.write_line(", ".join(f"{t} {n} tests {s:.0f} s" for t, (n, s) in times.items()))

    if REPORT.campaigns:
        terminalreporter.write_sep("-", "fault-injection campaign on the local cloud")
        for line in REPORT.campaign_lines():
            terminalreporter.write_line(line)
    if REPORT.control_plane:
        terminalreporter.write_sep("-", "control-plane campaign on the local cloud")
        for line in REPORT.control_plane:
            terminalreporter.write_line(line)
    if REPORT.parallel_campaign:
        terminalreporter.write_sep("-", "data-parallel chaos campaign on the local cloud")
        for line in REPORT.parallel_campaign:
            terminalreporter.write_line(line)
    if REPORT.runs:
        terminalreporter.write_sep("-", "fault injection")
        terminalreporter.write_line(
            f"runs tried: {REPORT.runs}, faults injected: {REPORT.faults}, "
            f"runs that ended identical: {REPORT.identical}"
        )

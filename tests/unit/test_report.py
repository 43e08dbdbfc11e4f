"""The suite's own summary (tests/support/report.py): the time each tier took."""

from __future__ import annotations

import json
from types import SimpleNamespace

from tests.support.report import FaultReport, tier_times

TIERS = {"c::a": "cloud", "u::a": "unit", "u::b": "unit", "i::apply": "acceptance"}


def _report(test: str, when: str, duration: float) -> SimpleNamespace:
    # A test's keywords hold its folders' names (tests/infra/...): the tier is its marker's, recorded
    # in its user properties at collection (they reach pytest's controller from a worker process).
    properties = [("tier", TIERS[test])] if test in TIERS else []
    return SimpleNamespace(
        nodeid=test, keywords={"infra": 1, "acceptance": 1}, when=when, duration=duration, user_properties=properties
    )


def test_each_tier_counts_its_tests_once_and_every_phase_of_their_time() -> None:
    reports = [
        _report("c::a", "setup", 12.0),  # a module's stack, paid in its first test's set-up
        _report("c::a", "call", 3.0),
        _report("c::a", "teardown", 0.5),
        _report("u::a", "setup", 0.0),
        _report("u::a", "call", 0.25),
        _report("u::b", "call", 0.25),
        _report("i::apply", "call", 100.0),
        _report("gone::x", "call", 9.0),  # no tier: not counted
    ]
    times = tier_times(reports)
    assert times == {"unit": (2, 0.5), "cloud": (1, 15.5), "acceptance": (1, 100.0)}
    assert list(times) == ["unit", "cloud", "acceptance"], "in the tiers' order, not the reports'"


def test_a_workers_figures_reach_the_controllers_summary_whole() -> None:
    """Each worker process gathers its own campaigns' figures; the controller adds them up."""
    worker, controller = FaultReport(), FaultReport()
    worker.record(faults=3, identical=True)
    stats = {"aws_faults": {"injected_total": 2}, "kills": 1}
    worker.record_campaign("0 fused x2", stats, identical=False)
    worker.control_plane.append("seed 1: problems 0")
    worker.parallel_campaign.append("runs 1")
    controller.record(faults=1, identical=True)
    controller.merge(json.loads(json.dumps(worker.state())))  # as xdist carries it: JSON
    assert (controller.runs, controller.faults, controller.identical) == (3, 7, 2)
    assert controller.campaigns == [("0 fused x2", stats, False)]
    assert controller.control_plane == ["seed 1: problems 0"] and controller.parallel_campaign == ["runs 1"]

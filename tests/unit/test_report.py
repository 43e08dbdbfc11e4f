"""The suite's own summary (tests/support/report.py): the time each tier took."""

from __future__ import annotations

from types import SimpleNamespace

from tests.support.report import tier_times


def _report(test: str, when: str, duration: float) -> SimpleNamespace:
    # A test's keywords hold its folders' names (tests/infra/...): the tier is its marker's.
    return SimpleNamespace(nodeid=test, keywords={"infra": 1, "acceptance": 1}, when=when, duration=duration)


def test_each_tier_counts_its_tests_once_and_every_phase_of_their_time() -> None:
    tiers = {"c::a": "cloud", "u::a": "unit", "u::b": "unit", "i::apply": "acceptance"}
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
    times = tier_times(reports, tiers)
    assert times == {"unit": (2, 0.5), "cloud": (1, 15.5), "acceptance": (1, 100.0)}
    assert list(times) == ["unit", "cloud", "acceptance"], "in the tiers' order, not the reports'"

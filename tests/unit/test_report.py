"""The suite's own summary (tests/support/report.py): the time each tier took."""

from __future__ import annotations

from types import SimpleNamespace

from tests.support.report import tier_times


def _report(tier: str, when: str, duration: float) -> SimpleNamespace:
    return SimpleNamespace(keywords={tier: 1, "test_x": 1}, when=when, duration=duration)


def test_each_tier_counts_its_tests_once_and_every_phase_of_their_time() -> None:
    reports = [
        _report("cloud", "setup", 12.0),  # a module's stack, paid in its first test's set-up
        _report("cloud", "call", 3.0),
        _report("cloud", "teardown", 0.5),
        _report("unit", "setup", 0.0),
        _report("unit", "call", 0.25),
        _report("unit", "call", 0.25),
        SimpleNamespace(keywords={"test_y": 1}, when="call", duration=9.0),  # no tier: not counted
    ]
    assert tier_times(reports) == {"unit": (2, 0.5), "cloud": (1, 15.5)}
    assert list(tier_times(reports)) == ["unit", "cloud"], "in the tiers' order, not the reports'"

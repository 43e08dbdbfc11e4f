"""The campaigns' figures, gathered over the session and printed in pytest's summary
(tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TIERS = ("unit", "cloud", "infra", "acceptance")  # pyproject.toml's markers, tests/README.md's tiers


def tier_of_report(report: Any) -> str | None:
    """The tier a test report belongs to: its test's marker, which the collection also records in the
    test's user properties (they travel with the report from a worker process to pytest's controller;
    a test's keywords hold its folders' names too, and `infra` is a folder)."""
    return next((value for key, value in getattr(report, "user_properties", ()) if key == "tier"), None)


def tier_times(reports: Iterable[Any]) -> dict[str, tuple[int, float]]:
    """Each tier's tests and seconds from pytest's test reports (setup, call and teardown: a
    module's set-up counts in its first test's), in the tiers' order; tiers with no test left out.
    With test files on several processes side by side, the seconds are the tests' own, summed: more
    than the run's wall time."""
    seconds = dict.fromkeys(TIERS, 0.0)
    tests = dict.fromkeys(TIERS, 0)
    for report in reports:
        tier = tier_of_report(report)
        if tier is None:
            continue
        seconds[tier] += report.duration
        tests[tier] += report.when == "call"
    return {t: (tests[t], seconds[t]) for t in TIERS if tests[t]}


class FaultReport:
    """Counts for the fault-injection suite, printed at the end of the test session."""

    def __init__(self) -> None:
        self.runs = self.faults = self.identical = 0
        self.campaigns: list[tuple[str, dict, bool]] = []  # (campaign, local cloud stats, identical)
        self.control_plane: list[str] = []  # the control plane's campaign: its figures, one line a seed
        self.parallel_campaign: list[str] = []  # the data-parallel campaign: its figures, then its problems

    def state(self) -> dict[str, Any]:
        """What a worker process gathered, for pytest's controller to add to its own (`merge`)."""
        return {
            "runs": self.runs,
            "faults": self.faults,
            "identical": self.identical,
            "campaigns": [list(c) for c in self.campaigns],
            "control_plane": self.control_plane,
            "parallel_campaign": self.parallel_campaign,
        }

    def merge(self, state: dict[str, Any]) -> None:
        self.runs += state["runs"]
        self.faults += state["faults"]
        self.identical += state["identical"]
        self.campaigns += [(c[0], c[1], c[2]) for c in state["campaigns"]]
        self.control_plane += state["control_plane"]
        self.parallel_campaign += state["parallel_campaign"]

    def record(self, faults: int, identical: bool) -> None:
        self.runs += 1
        self.faults += faults
        self.identical += int(identical)

    def record_campaign(self, campaign: str, stats: dict, identical: bool) -> None:
        """A disturbed run on the local cloud, with the Lambda service's and the emulator's counts
        (the cloud's /_lnn/stats)."""
        self.campaigns.append((campaign, stats, identical))
        self.record(faults=stats["aws_faults"]["injected_total"] + stats["kills"], identical=identical)

    def campaign_lines(self) -> list[str]:
        keys = ("events_accepted", "deliveries", "duplicate_copies", "overlapping_deliveries", "kills", "retries")
        keys += ("function_errors", "environments_started")
        lines, totals = [], dict.fromkeys((*keys, "aws_requests", "aws_faults", "sdk_retries"), 0)
        injected: dict[str, int] = {}
        starts: list[tuple[int, float, float]] = []  # (count, mean, max) of environment start-ups
        for campaign, stats, identical in self.campaigns:
            start = stats["environment_start_s"]
            if start["count"]:
                starts.append((start["count"], start["mean"], start["max"]))
            faults = stats["aws_faults"]
            figures = {k: stats[k] for k in keys}
            figures["aws_requests"] = sum(faults["requests"].values())
            figures["aws_faults"] = faults["injected_total"]
            figures["sdk_retries"] = sum(faults["sdk_retries"].values())
            for key, value in figures.items():
                totals[key] += value
            for code, count in faults["injected"].items():
                injected[code] = injected.get(code, 0) + count
            most = stats["max_concurrent_copies"]
            shown = ", ".join(f"{k} {v}" for k, v in figures.items())
            lines.append(f"campaign [{campaign}]: {shown}, max concurrent copies {most}, identical: {identical}")
        same = sum(identical for _, _, identical in self.campaigns)
        shown = ", ".join(f"{k} {v}" for k, v in totals.items())
        lines.append(f"campaign totals: runs {len(self.campaigns)}, {shown}, runs bit-identical {same}")
        lines.append("AWS faults injected by code: " + ", ".join(f"{k} {v}" for k, v in sorted(injected.items())))
        # Every SDK retry follows a failed attempt, and only injected faults fail those requests:
        # the faults not followed by a retry are the ones that reached the handler.
        lines.append(
            f"AWS faults absorbed by the SDK's retries: {totals['sdk_retries']}, "
            f"reached the handler (a function error; Lambda's retry or another copy took over): "
            f"{totals['aws_faults'] - totals['sdk_retries']}"
        )
        if starts:
            count = sum(n for n, _, _ in starts)
            mean = sum(n * m for n, m, _ in starts) / count
            lines.append(
                f"execution environment start-up (process start to first poll of the Runtime API): {count} "
                f"started, mean {mean:.3f} s, max {max(m for _, _, m in starts):.3f} s"
            )
        return lines


REPORT = FaultReport()

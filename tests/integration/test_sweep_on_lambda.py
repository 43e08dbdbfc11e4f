"""Sweeps on the local cloud: LaunchLambda starts the trials, each trial's chain runs in its own
execution environments, and the scheduler's decisions are taken in the trials' completions. Under
chaos (every event delivered twice at nearly the same moment to different environments,
environments killed mid-invocation and retried, copies delayed) the sweep must end as the calm
one does: every trial started once, the same figures, one summary message, none per trial."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.cloud import (
    FLEET,
    assert_ran_pinned_on_a_mixed_fleet,
    assert_sent_once,
    invoke,
    messages_by_run,
    retire_environments,
)
from tests.support.paths import REPO_ROOT
from tests.support.requests import moons, random_sweep
from trainer.local.lambda_service import Chaos
from trainer.stores.run_store import DynamoRunStore
from trainer.sweep import scheduler

BASE = moons(
    (6, 1),
    ("tanh", "sigmoid"),
    epochs=6,
    learning_rate=0.05,
    optimizer="adam",
    batch_size=100,
    max_steps_per_invocation=7,
    checkpoint_every=0,
)


def sweep_request(sweep_id: str, **extra: Any) -> dict[str, Any]:
    defaults = {"sweep_id": sweep_id, "trials": 5, "seed": 2, "max_concurrency": 2, "validation_fraction": 0.25}
    return random_sweep(
        BASE, {"learning_rate": {"log_uniform": [0.002, 0.3]}, "neurons.layer1": [3, 6]}, **defaults | extra
    )


@pytest.fixture
def sweep_env(cloud_env: dict[str, str], chaos_stack: dict[str, str], monkeypatch) -> dict[str, str]:
    for key, value in {**cloud_env, "TABLE_NAME": chaos_stack["TABLE_NAME"]}.items():
        monkeypatch.setenv(key, value)
    return chaos_stack


def _sweep(cloud, cloud_env, stack, request: dict[str, Any], chaos: Chaos) -> tuple[dict[str, Any], dict[str, Any]]:
    cloud.reset_stats()
    cloud.set_chaos(chaos)
    try:
        resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
        assert "FunctionError" not in resp, launched
        assert len(launched["started"]) == request["max_concurrency"]
        reader = SimpleNamespace(run_store=DynamoRunStore(stack["TABLE_NAME"]))
        cloud.wait_idle(timeout_s=300)
        return scheduler.status(reader, request["sweep_id"]), cloud.stats()
    finally:
        cloud.set_chaos(Chaos())


def _figures(status: dict[str, Any]) -> list[tuple]:
    return sorted(
        (r["trial"], r["state"], r["validation_accuracy"], r["epochs_run"], r["curve"]) for r in status["leaderboard"]
    )


def test_a_sweep_under_chaos_ends_as_the_calm_one(cloud, cloud_env, sweep_env) -> None:
    # The shared stack's trainer starts afresh, as a new stack's would: the environments the calm
    # sweep starts are the only warm ones when the stormy sweep (and its mixed fleet) begins.
    retire_environments(sweep_env["TRAINER_FUNCTION_NAME"])
    calm, _ = _sweep(cloud, cloud_env, sweep_env, sweep_request("calm"), Chaos())
    chaos = Chaos(seed=31, duplicates=2, kill_probability=0.1, kill_window_s=0.03, max_delay_s=0.02, hosts=FLEET)
    stormy, stats = _sweep(cloud, cloud_env, sweep_env, sweep_request("stormy"), chaos)
    print(f"\n[sweep under chaos] {json.dumps({k: v for k, v in stats.items() if k != 'chaos'})}")
    assert stats["overlapping_deliveries"] > 0 and stats["kills"] > 0
    assert_ran_pinned_on_a_mixed_fleet(stats)
    assert calm["status"] == stormy["status"] == "ENDED"
    assert _figures(stormy) == _figures(calm)
    assert stormy["by_state"] == {"SUCCEEDED": 5}
    store = DynamoRunStore(sweep_env["TABLE_NAME"])
    assert sorted(int(t["successor"]) for t in store.sweep_trials("stormy")) == [-1, -1, 2, 3, 4]
    differ = ("compute_s", "best_model_uri", "best_run_id", "sweep_id")  # timings, and the names
    assert {k: v for k, v in stormy["summary"].items() if k not in differ} == {
        k: v for k, v in calm["summary"].items() if k not in differ
    }
    messages = messages_by_run(cloud_env, sweep_env["MESSAGES_QUEUE_URL"])
    assert {sweep: set(kinds) for sweep, kinds in messages.items()} == {
        "calm": {"SWEEP_ENDED"},
        "stormy": {"SWEEP_ENDED"},
    }
    for sweep, kinds in messages.items():  # nothing per trial
        assert_sent_once(cloud_env, sweep_env["TABLE_NAME"], sweep, kinds)


def test_early_stopping_under_chaos_decides_once_per_trial_and_rung(cloud, cloud_env, sweep_env, tmp_path) -> None:
    request = sweep_request("asha", trials=6, early_stopping={"asha": {"min_epochs": 2, "reduction_factor": 2}})
    chaos = Chaos(seed=32, duplicates=2, kill_probability=0.05, kill_window_s=0.03, max_delay_s=0.02)
    status, _ = _sweep(cloud, cloud_env, sweep_env, request, chaos)
    assert status["status"] == "ENDED"
    assert set(status["by_state"]) <= {"SUCCEEDED", "STOPPED"} and sum(status["by_state"].values()) == 6
    assert status["by_state"].get("STOPPED", 0) >= 1
    db = DynamoRunStore(sweep_env["TABLE_NAME"])
    decisions = {}
    for rung in (2, 4):
        for entry in db.rung_entries("asha", rung):
            assert (rung, entry["trial"]) not in decisions  # one decision per trial and rung
            decisions[(rung, entry["trial"])] = entry["decision"]
    for row in status["leaderboard"]:
        if row["state"] == "STOPPED":
            assert decisions[(row["epochs_run"], row["trial"])] == "STOP"
        else:
            assert row["epochs_run"] == 6 and "STOP" not in {decisions.get((r, row["trial"])) for r in (2, 4)}

    # the leaderboard and the plot, from DynamoDB, as a user reads them
    cli = [sys.executable, "-m", "trainer", "sweep"]
    shown = subprocess.run([*cli, "status", "asha"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("sweep asha: ENDED")
    board = [line.split() for line in lines[2:8]]
    assert [int(row[0]) for row in board] == [1, 2, 3, 4, 5, 6]
    assert {int(row[1]) for row in board} == set(range(6))
    assert "best: trial" in shown.stdout and "test accuracy" in shown.stdout
    plot = tmp_path / "sweep.png"
    subprocess.run([*cli, "plot", "asha", "-o", str(plot)], cwd=REPO_ROOT, capture_output=True, check=True)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

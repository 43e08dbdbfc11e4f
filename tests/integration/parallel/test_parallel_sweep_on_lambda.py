"""A sweep whose trials are data-parallel, on the Lambda service: each trial starts as a
data-parallel run (one TrainerLambda invocation per worker, reducing through the cache), its
workers' finish ends the trial and hands its slot on, and the sweep ends with one summary. Under
early stopping the workers' epoch items take the trial to its rungs, where the scheduler decides
once, and a trial told to stop stops with its workers. Two trials at once of two workers each take
the session cloud's whole account concurrency (4)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.support.cloud import assert_sent_once, invoke, messages_by_run
from tests.support.parallel import REQUEST, assert_ends_as_the_reference, expected_scores
from tests.support.paths import REPO_ROOT
from trainer.local.lambda_service import Chaos
from trainer.runconfig import RunConfig
from trainer.stores.run_store import DynamoRunStore
from trainer.sweep import scheduler

WORKERS = 2
FRACTION = 0.2


def _sweep(sweep_id: str, **extra) -> dict:
    return {
        "action": "sweep",
        "sweep_id": sweep_id,
        "base": {**REQUEST, "workers": WORKERS, "max_steps_per_invocation": 7},
        "space": {"learning_rate": [0.02, 0.05, 0.1]},
        "strategy": "grid",
        "max_concurrency": 2,  # x 2 workers: the account's 4
        "validation_fraction": FRACTION,
        "seed": 1,  # the split's seed, the trials' own (the base leaves it at its default, 1)
        **extra,
    }


def _reference_payload(item: dict) -> dict:
    """A trial's request as a run's: its split is its sweep's, drawn with the trials' seed."""
    return {**json.loads(item["request"]), "run_id": item["run_id"], "validation_fraction": FRACTION, "seed": 1}


def test_a_sweep_of_data_parallel_trials_ends_with_every_trial_equal_to_its_reference(cloud, cloud_env, stack) -> None:
    sweep_id = "dps-" + secrets.token_hex(3)
    request = _sweep(sweep_id)
    resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
    assert "FunctionError" not in resp, launched
    assert launched["trials"] == 3 and len(launched["started"]) == 2
    cloud.wait_idle(timeout_s=300)

    store = DynamoRunStore(stack["TABLE_NAME"])
    status = scheduler.status(SimpleNamespace(run_store=store), sweep_id)
    assert status["status"] == "ENDED", status
    assert status["by_state"] == {"SUCCEEDED": 3}, status
    assert sorted(int(t["successor"]) for t in store.sweep_trials(sweep_id)) == [-1, -1, 2]
    for item in store.sweep_trials(sweep_id):
        assert json.loads(item["request"])["workers"] == WORKERS
        run = store.get_run(item["run_id"])
        assert run["status"] == "SUCCEEDED", run
        assert {int(w) for w in run["worker_steps"]} == set(range(WORKERS))  # it ran as workers
        # its model and every epoch's cost and validation scores, bit for bit the reference's
        assert_ends_as_the_reference(cloud_env, stack, _reference_payload(item))

    # as a user reads them: the sweep's trials, and a trial's workers with the step each reached
    env = {**os.environ, **cloud_env, "TABLE_NAME": stack["TABLE_NAME"]}
    lnn = [sys.executable, "-m", "trainer"]
    board = subprocess.run([*lnn, "sweep", "status", sweep_id], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert board.returncode == 0 and board.stdout.startswith(f"sweep {sweep_id}: ENDED"), board.stderr
    run_id = status["leaderboard"][0]["run_id"]
    shown = subprocess.run([*lnn, "status", run_id], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    plan = RunConfig.from_json(store.get_run(run_id)["config"]).plan
    last = plan.epochs * plan.batches - 1  # every worker beats at its last step (one a batch)
    assert json.loads(shown.stdout)["workers"] == {"0": last, "1": last}

    best = max(status["leaderboard"], key=lambda r: (r["validation_accuracy"], -r["trial"]))
    assert status["summary"]["best_trial"] == best["trial"]
    assert status["summary"]["best_run_id"] == best["run_id"]
    messages = messages_by_run(cloud_env, stack["MESSAGES_QUEUE_URL"])
    assert messages == {sweep_id: {"SWEEP_ENDED": [None]}}  # the sweep speaks for its trials
    assert_sent_once(cloud_env, stack["TABLE_NAME"], sweep_id, messages[sweep_id])


# Under chaos every worker event comes twice at nearly the same moment to different environments,
# environments are killed mid-invocation and retried, copies delayed: the rungs are still judged
# once, the stopped trials stop with their workers, and the others end as their references.
CHAOS = {
    "calm": Chaos(),
    "stormy": Chaos(seed=41, duplicates=2, kill_probability=0.1, kill_window_s=0.03, max_delay_s=0.02),
}


@pytest.mark.parametrize("weather", CHAOS)
def test_early_stopping_stops_a_data_parallel_trial_at_its_rung_and_the_sweep_ends(
    cloud, cloud_env, chaos_stack, weather: str
) -> None:
    stack = chaos_stack
    sweep_id = f"dpa-{weather}-" + secrets.token_hex(3)
    # Trials 2 and 3 learn next to nothing: each reaches rung 2 after a trial that ended (so had
    # passed it) and scores no better there, so ASHA stops it. 12 steps an epoch.
    request = _sweep(
        sweep_id,
        space={"learning_rate": [0.05, 0.1, 1e-5, 2e-5]},
        early_stopping={"asha": {"min_epochs": 2, "reduction_factor": 2}},
    )
    request["base"] |= {"batch_size": 20}
    cloud.reset_stats()
    cloud.set_chaos(CHAOS[weather])
    try:
        resp, launched = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
        assert "FunctionError" not in resp, launched
        cloud.wait_idle(timeout_s=400)
        stats = cloud.stats()
    finally:
        cloud.set_chaos(Chaos())
    if weather == "stormy":
        print(f"\n[data-parallel sweep under chaos] {json.dumps({k: v for k, v in stats.items() if k != 'chaos'})}")
        assert stats["overlapping_deliveries"] > 0 and stats["kills"] > 0, stats

    store = DynamoRunStore(stack["TABLE_NAME"])
    status = scheduler.status(SimpleNamespace(run_store=store), sweep_id)
    assert status["status"] == "ENDED", status
    rows = {row["trial"]: row for row in status["leaderboard"]}
    assert {rows[2]["state"], rows[3]["state"]} == {"STOPPED"}, status
    assert {row["state"] for row in rows.values()} <= {"SUCCEEDED", "STOPPED"}
    assert sorted(int(t["successor"]) for t in store.sweep_trials(sweep_id)) == [-1, -1, 2, 3]
    decisions: dict[tuple[int, int], str] = {}
    for rung in (2, 4):
        for entry in store.rung_entries(sweep_id, rung):
            decisions[(rung, int(entry["trial"]))] = entry["decision"]
    for item in store.sweep_trials(sweep_id):
        row, run = rows[int(item["trial"])], store.get_run(item["run_id"])
        payload = _reference_payload(item)
        if row["state"] == "STOPPED":
            # stopped at the rung that said so, its workers with it: no epoch past the rung
            # (a good trial may be stopped at rung 4 by the other good one; the weak ones at rung 2)
            assert decisions[(row["epochs_run"], row["trial"])] == "STOP"
            assert int(run["epochs_run"]) == row["epochs_run"] == (2 if row["trial"] >= 2 else row["epochs_run"])
            epochs = sorted(store.epochs(item["run_id"]), key=lambda e: e["epoch"])
            scores = [(float(e["validation_cost"]), float(e["validation_accuracy"])) for e in epochs]
            assert scores == expected_scores(payload)[: row["epochs_run"]]
        else:
            assert row["epochs_run"] == REQUEST["epochs"]
            assert "STOP" not in {decisions.get((r, row["trial"])) for r in (2, 4)}
            assert_ends_as_the_reference(cloud_env, stack, payload)
    messages = messages_by_run(cloud_env, stack["MESSAGES_QUEUE_URL"])
    assert messages == {sweep_id: {"SWEEP_ENDED": [None]}}
    assert_sent_once(cloud_env, stack["TABLE_NAME"], sweep_id, messages[sweep_id])

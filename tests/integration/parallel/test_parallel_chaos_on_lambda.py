"""The data-parallel chaos campaign through the Lambda service: for each seed
(tests/support/parallel_campaign.py; `make test` runs one, `python -m tests.support.parallel_campaign
--seeds 1-12` many) a request for 4 workers runs calm, then in chaos mode: every worker event (the
launch's and each hand-on) delivered two or three times to different execution environments at
nearly the same moment, environments killed mid-invocation and retried as Lambda retries, copies
delayed and reordered, on a mixed fleet of hosts, and the workers' AWS calls throttled or failed
(DynamoDB, S3, SNS) as the fault campaign's are. The disturbed run must end as its calm twin:
SUCCEEDED with the same final figures, the same model (every array), the same epoch history, one
SUCCEEDED message, one PROGRESS message per notified epoch, none FAILED or CANCELLED. Every problem
is collected, and the figures are printed before a seed with a problem fails."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from tests.support.cloud import FLEET, aws, invoke, messages_by_run, retire_environments, run_item, wait_for_status
from tests.support.parallel_campaign import FIGURES, NOTIFY_EVERY, Round, draw, seeds
from tests.support.report import REPORT
from trainer.local.faults import FaultPlan
from trainer.local.lambda_service import Chaos
from trainer.stores.run_store import DynamoRunStore

FINAL = ("status", "final_cost", "train_accuracy", "test_accuracy", "validation_accuracy", "epochs")
EPOCH_FIGURES = ("cost", "accuracy", "validation_cost", "validation_accuracy")


def run(cloud, cloud_env, stack, request: dict, chaos: Chaos, faults: FaultPlan) -> tuple[dict, dict]:
    """Launch (calmly: the client's own call is not the subject), disturb the workers, and wait
    until the Lambda service has nothing left to deliver: late copies and retries are part of the
    run. The run item as it finally stands, and the cloud's counts."""
    cloud.reset_stats()
    cloud.set_chaos(chaos)
    try:
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], request)
        assert "FunctionError" not in resp, body
        cloud.set_faults(faults)
        # Still RUNNING past the bound is a run stuck: a problem the comparison with its calm twin names.
        with contextlib.suppress(AssertionError):
            wait_for_status(cloud_env, stack["TABLE_NAME"], request["run_id"], 400)
        cloud.wait_idle(timeout_s=400)
        stats = cloud.stats()
    finally:
        cloud.set_faults(FaultPlan())
        cloud.set_chaos(Chaos())
    return run_item(cloud_env, stack["TABLE_NAME"], request["run_id"]), stats


def model(cloud_env, stack, run_id: str) -> dict[str, bytes] | None:
    """Every array of the run's model file, as bytes (the archive's own dates differ from copy to copy)."""
    s3 = aws("s3", cloud_env)
    try:
        blob = s3.get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{run_id}/model.npz")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {k: archive[k].tobytes() + str(archive[k].dtype).encode() for k in archive.files}


def history(stack, run_id: str) -> list[tuple]:
    """The run's epoch items: every figure but the epoch's duration."""
    items = sorted(DynamoRunStore(stack["TABLE_NAME"]).epochs(run_id), key=lambda e: int(e["epoch"]))
    return [(int(e["epoch"]), *(str(e.get(k)) for k in EPOCH_FIGURES)) for e in items]


def problems_of(cloud_env, stack, round_: Round, calm_id: str, stormy_id: str, stormy: dict, calm: dict) -> list[str]:
    found = []
    for key in FINAL:
        if stormy.get(key) != calm.get(key):
            found.append(f"{key} {stormy.get(key)!r}, its calm twin's {calm.get(key)!r}")
    calm_model, got_model = model(cloud_env, stack, calm_id), model(cloud_env, stack, stormy_id)
    if got_model is None or got_model != calm_model:
        reference = calm_model or {}
        differ = "no model" if got_model is None else sorted(k for k in reference if got_model.get(k) != reference[k])
        found.append(f"the model differs from its calm twin's: {differ}")
    calm_history, got_history = history(stack, calm_id), history(stack, stormy_id)
    if got_history != calm_history:
        found.append(f"the epoch history differs from its calm twin's: {got_history} != {calm_history}")
    messages = messages_by_run(cloud_env, stack["MESSAGES_QUEUE_URL"])
    kinds = messages.get(stormy_id, {})
    if len(kinds.get("SUCCEEDED", [])) != 1:
        found.append(f"{len(kinds.get('SUCCEEDED', []))} SUCCEEDED messages")
    for kind in ("FAILED", "CANCELLED"):
        if kinds.get(kind):
            found.append(f"{len(kinds[kind])} {kind} messages")
    epochs = round_.request["epochs"]
    want = sorted(e for e in range(epochs) if (e + 1) % NOTIFY_EVERY == 0)
    if sorted(kinds.get("PROGRESS", [])) != want:
        found.append(f"PROGRESS messages for epochs {sorted(kinds.get('PROGRESS', []))}, expected {want} once each")
    return found


@pytest.mark.parametrize("seed", seeds())
def test_a_data_parallel_run_under_chaos_ends_as_its_calm_twin(cloud, cloud_env, chaos_stack, seed: int) -> None:
    round_ = draw(seed, FLEET)
    calm_id, stormy_id = f"dpcalm-{seed}", f"dpstorm-{seed}"
    calm, calm_stats = run(cloud, cloud_env, chaos_stack, {**round_.request, "run_id": calm_id}, Chaos(), FaultPlan())
    assert calm["status"] == "SUCCEEDED" and calm_stats["duplicate_copies"] == 0, calm
    # New environments for the stormy run: they start on the mixed fleet.
    retire_environments(chaos_stack["TRAINER_FUNCTION_NAME"])
    request = {**round_.request, "run_id": stormy_id}
    stormy, stats = run(cloud, cloud_env, chaos_stack, request, round_.chaos, round_.faults)
    FIGURES.add(stats)
    problems = problems_of(cloud_env, chaos_stack, round_, calm_id, stormy_id, stormy, calm)
    if not problems:
        FIGURES.identical += 1
    FIGURES.problems.extend(f"{round_.label}: {p}" for p in problems)
    REPORT.parallel_campaign = [FIGURES.line(), *(f"  problem: {p}" for p in FIGURES.problems)]
    figures = {k: stats[k] for k in ("duplicate_copies", "overlapping_deliveries", "kills", "retries")}
    print(f"\n[data-parallel campaign] {round_.label}: {figures}, faults {stats['aws_faults']['injected_total']}")
    assert not problems, "; ".join(problems)
    # Each round meets what it is about: copies at once, kills, AWS faults, more than one kind of host.
    assert stats["duplicate_copies"] > 0 and stats["overlapping_deliveries"] > 0, stats
    assert stats["kills"] > 0 and stats["aws_faults"]["injected_total"] > 0, stats
    assert len(stats["hosts"]) >= 2, stats["hosts"]

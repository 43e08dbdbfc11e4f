"""The control plane's campaign: runs on the local cloud disturbed only from outside, as a user, a
failing host or an attacker disturbs them, each checked against the transition table
(trainer/README.md) and against its calm twin.

- launch and cancel racing each other, cancel racing the finish, resume racing cancel;
- two launches with one run id and different data;
- the cache node replaced at a random point of a run (same endpoint, empty memory);
- LaunchLambda's environment killed mid-launch and mid-resume, then the request sent again;
- forged trainer events of every kind sent to the trainer function while a run trains.

Every choice comes from one seed (LNN_CAMPAIGN_SEED; LNN_CAMPAIGN_ROUNDS rounds of every
scenario, or of those named in LNN_CAMPAIGN_SCENARIOS, comma-separated, to chase one race). Each
run must end in the state the table says (a cancel answered OK means CANCELLED, no model and no
SUCCEEDED; a refused cancel means the run ends as if it had not been sent), identical to its calm
twin where it succeeds, with one message per kind and key, and nothing stuck: no run stays RUNNING
once the Lambda service is idle. Every problem is collected and the figures are
printed (runs, races, node replacements, kills, forged events, runs identical / in their expected
state) before the test asserts that none was found.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import pytest

from tests.support.cloud import (
    FLEET,
    assert_ran_pinned_on_a_mixed_fleet,
    aws,
    messages_by_run,
    retire_environments,
    run_item,
)
from tests.support.report import REPORT
from tests.support.requests import moons
from trainer.local.lambda_service import Chaos

SEED = int(os.environ.get("LNN_CAMPAIGN_SEED", "2112"))
ROUNDS = int(os.environ.get("LNN_CAMPAIGN_ROUNDS", "1"))
REQUEST: dict[str, Any] = moons(
    (6, 1),
    ("relu", "sigmoid"),
    epochs=6,
    learning_rate=0.3,
    seed=7,
    chain="fused",
    max_steps_per_invocation=5,  # many hand-offs: many points to disturb
    checkpoint_every=2,
    notify_every=1,
)
# LNN_CAMPAIGN_WORKERS > 1: the same scenarios on data-parallel runs of that many workers (mini-batch,
# so that a run has steps to race).
WORKERS = int(os.environ.get("LNN_CAMPAIGN_WORKERS", "1"))
if WORKERS > 1:
    REQUEST = {**REQUEST, "workers": WORKERS, "batch_size": 40}
OTHER: dict[str, Any] = {**REQUEST, "dataset": "circles", "seed": 8}  # other data, same shape
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
SETTLE_S = 240


@dataclass
class Figures:
    runs: int = 0
    races: int = 0
    node_replacements: int = 0
    kills: int = 0
    forged: int = 0
    identical: int = 0
    expected: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"runs {self.runs}, races {self.races}, node replacements {self.node_replacements}, kills {self.kills}, "
            f"forged events {self.forged}, runs identical to their calm twin {self.identical}, "
            f"runs in their expected final state {self.expected}/{self.runs}, problems {len(self.problems)}"
        )


def brief(item: dict[str, Any] | None) -> str:
    """What a problem report needs of a run item."""
    if item is None:
        return "no run item"
    fields = ("status", "handoff", "last_seq", "worker_steps", "total_steps", "failure_reason")
    return ", ".join(f"{k}={str(item.get(k))[:160]}" for k in fields if k in item)


def progress(item: dict[str, Any]) -> int:
    """How far a run is: the chain's last applied seq, or the step every worker has gathered (a
    data-parallel run's heartbeat, `worker_steps`: worker -> step)."""
    if WORKERS == 1:
        return int(item.get("last_seq", -1))
    steps = [int(next(iter(v.values()))) for v in (item.get("worker_steps") or {}).values()]
    return min(steps) if len(steps) == WORKERS else -1


class Campaign:
    def __init__(self, cloud, cloud_env: dict[str, str], stack: dict[str, str], rng: random.Random) -> None:
        self.cloud, self.cloud_env, self.stack, self.rng = cloud, cloud_env, stack, rng
        self.figures = Figures()
        self.twins: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0  # a data-parallel run's steps (its calm twin's), where it has no seq
        self.failures_caused: Counter[str] = Counter()  # run id -> FAILED messages it may send
        self.names: list[str] = []

    # -- the user's side: LaunchLambda through the Lambda API -----------------------------------
    def ask(self, payload: dict[str, Any]) -> tuple[bool, Any]:
        resp = aws("lambda", self.cloud_env).invoke(
            FunctionName=self.stack["LAUNCH_FUNCTION_NAME"], Payload=json.dumps(payload).encode()
        )
        body = json.loads(resp["Payload"].read() or b"null")
        return "FunctionError" not in resp, body

    def race(self, *calls: Callable[[], tuple[bool, Any]], offsets: tuple[float, ...]) -> list[tuple[bool, Any]]:
        """The calls at once, each after its offset (seconds)."""
        self.figures.races += 1
        answers: list[Any] = [None] * len(calls)

        def run(i: int) -> None:
            time.sleep(offsets[i])
            answers[i] = calls[i]()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    # -- what a run left ------------------------------------------------------------------------
    def item(self, run_id: str) -> dict[str, Any] | None:
        try:
            return run_item(self.cloud_env, self.stack["TABLE_NAME"], run_id)
        except KeyError:
            return None

    def settle(self, run_id: str) -> dict[str, Any] | None:
        """The run item once it has left RUNNING, or once the Lambda service is idle (then a RUNNING
        run has nothing in flight: stuck)."""
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            item = self.item(run_id)
            if item is not None and item["status"] in TERMINAL:
                self.cloud.wait_idle(timeout_s=SETTLE_S)
                return self.item(run_id)
            if self.cloud.idle():  # nothing queued or in flight, Lambda's retries included
                return self.item(run_id)
            time.sleep(0.1)
        return self.item(run_id)

    def model(self, run_id: str) -> dict[str, np.ndarray] | None:
        s3 = aws("s3", self.cloud_env)
        try:
            body = s3.get_object(Bucket=self.stack["MODEL_BUCKET"], Key=f"models/{run_id}/model.npz")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files if k.startswith(("W", "b"))}

    def wait_progress(self, run_id: str, last_seq: int, timeout_s: float = 120) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            item = self.item(run_id)
            if item is not None and (progress(item) >= last_seq or item["status"] in TERMINAL):
                return True
            time.sleep(0.02)
        return False

    def total_steps(self, run_id: str) -> int:
        item = self.item(run_id) or {}
        return self.steps if WORKERS > 1 else int(item.get("total_steps", 0))

    # -- checks ---------------------------------------------------------------------------------
    def problem(self, run_id: str, what: str) -> None:
        self.figures.problems.append(f"{run_id}: {what}")

    def check(self, run_id: str, expected: str, twin: str | None, cancelled: bool = False) -> None:
        """The run ends `expected`; SUCCEEDED runs equal their twin; CANCELLED ones wrote no model."""
        self.figures.runs += 1
        self.names.append(run_id)
        item = self.settle(run_id)
        status = item["status"] if item else None
        if status != expected:
            stuck = " (stuck: RUNNING with nothing in flight)" if status == "RUNNING" else ""
            self.problem(run_id, f"ended {status}, expected {expected}{stuck}: {brief(item)}")
            return
        self.figures.expected += 1
        model = self.model(run_id)
        if expected == "SUCCEEDED":
            reference = self.twins[twin or "calm"]
            same = model is not None and model.keys() == reference.keys()
            same = same and all(np.array_equal(model[k], reference[k]) for k in reference)
            if same:
                self.figures.identical += 1
            else:
                self.problem(run_id, f"SUCCEEDED but not identical to its calm twin {twin or 'calm'}")
        if cancelled and model is not None:
            self.problem(run_id, "CANCELLED, yet a model was written")

    def check_messages(self) -> None:
        """One message per kind and key: SUCCEEDED and CANCELLED once per run and never both,
        PROGRESS once per epoch, FAILED only for failures the campaign caused (one each)."""
        by_run = messages_by_run(self.cloud_env, self.stack["MESSAGES_QUEUE_URL"])
        for run_id in self.names:
            kinds = by_run.get(run_id, {})
            for kind in ("SUCCEEDED", "CANCELLED"):
                if len(kinds.get(kind, [])) > 1:
                    self.problem(run_id, f"{len(kinds[kind])} {kind} messages")
            if kinds.get("SUCCEEDED") and kinds.get("CANCELLED"):
                self.problem(run_id, "both SUCCEEDED and CANCELLED were sent")
            repeated = [e for e, n in Counter(kinds.get("PROGRESS", [])).items() if n > 1]
            if repeated:
                self.problem(run_id, f"PROGRESS repeated for epochs {repeated}")
            if len(kinds.get("FAILED", [])) > self.failures_caused[run_id]:
                self.problem(
                    run_id, f"{len(kinds['FAILED'])} FAILED messages, {self.failures_caused[run_id]} failure(s) caused"
                )

    # -- disturbances ---------------------------------------------------------------------------
    def replace_node(self) -> None:
        self.figures.node_replacements += 1
        self.cloud.replace_node(self.stack["REPLICATION_GROUP_ID"], delay_s=self.rng.uniform(0.2, 1.0))

    def launch_environments(self) -> list[psutil.Process]:
        """The processes of the stack's LaunchLambda environments, as the local cloud lists them."""
        found = []
        for env in self.cloud.environments(self.stack["LAUNCH_FUNCTION_NAME"]):
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append(psutil.Process(env["pid"]))
        return found

    def ask_killed(self, payload: dict[str, Any], after_s: float) -> tuple[bool, Any]:
        """The request, with every LaunchLambda environment of the stack killed `after_s` into it."""

        def kill() -> None:
            time.sleep(after_s)
            for process in self.launch_environments():
                try:
                    process.kill()
                    self.figures.kills += 1
                except psutil.NoSuchProcess:
                    pass

        killer = threading.Thread(target=kill)
        killer.start()
        answer = self.ask(payload)
        killer.join()
        return answer

    def fail_by_cache_loss(self, run_id: str) -> str:
        """Launch a run and replace the cache node at a random point: the run must end FAILED
        (cache lost) with one FAILED message, within the invocation that met the loss. A run that
        finished before the node went (the chain outran the replacement) must be its calm twin, and
        another run is tried (three in all), so that what follows meets a failed run. The id of the
        run that met the loss: the last one tried, which is a problem unless it failed by it."""
        attempts = 3
        for attempt in range(1, attempts + 1):
            name = run_id if attempt == 1 else f"{run_id}-{attempt}"
            ok, body = self.ask({**REQUEST, "run_id": name})
            assert ok, body
            self.wait_progress(name, self.rng.randrange(3, 20 // attempt))
            self.replace_node()
            item = self.settle(name)
            outran = item is not None and item["status"] == "SUCCEEDED"
            if not outran or attempt == attempts:
                break
            self.check(name, "SUCCEEDED", "calm")
        self.failures_caused[name] += 1
        if item is None or item["status"] != "FAILED" or "cache" not in str(item.get("failure_reason", "")).lower():
            self.problem(name, f"a cache loss did not end FAILED (cache lost): {brief(item)}")
        return name

    # -- scenarios ------------------------------------------------------------------------------
    def launch_vs_cancel(self, run_id: str) -> None:
        offset = self.rng.uniform(0.0, 0.6)
        launched, cancelled = self.race(
            lambda: self.ask({**REQUEST, "run_id": run_id}),
            lambda: self.ask({"action": "cancel", "run_id": run_id}),
            offsets=(0.0, offset),
        )
        if not launched[0]:
            self.problem(run_id, f"the launch was refused: {launched[1]}")
        self.check(run_id, "CANCELLED" if cancelled[0] else "SUCCEEDED", "calm", cancelled=cancelled[0])

    def cancel_vs_finish(self, run_id: str) -> None:
        ok, body = self.ask({**REQUEST, "run_id": run_id})
        assert ok, body
        total = self.total_steps(run_id)
        self.wait_progress(run_id, max(0, total - 1 - self.rng.randrange(0, 3)))
        time.sleep(self.rng.uniform(0, 0.02))
        cancelled = self.ask({"action": "cancel", "run_id": run_id})
        self.figures.races += 1
        self.check(run_id, "CANCELLED" if cancelled[0] else "SUCCEEDED", "calm", cancelled=cancelled[0])

    def resume_vs_cancel(self, run_id: str) -> None:
        run_id = self.fail_by_cache_loss(run_id)
        resumed, cancelled = self.race(
            lambda: self.ask({"action": "resume", "run_id": run_id}),
            lambda: self.ask({"action": "cancel", "run_id": run_id}),
            offsets=(0.0, self.rng.uniform(0.0, 0.3)),
        )
        if cancelled[0]:
            self.check(run_id, "CANCELLED", None, cancelled=True)
        elif resumed[0]:
            self.check(run_id, "SUCCEEDED", "calm")
        else:
            self.problem(run_id, f"neither the resume nor the cancel was accepted: {resumed[1]}, {cancelled[1]}")
            self.check(run_id, "FAILED", None)

    def two_launches(self, run_id: str) -> None:
        first, second = self.race(
            lambda: self.ask({**REQUEST, "run_id": run_id}),
            lambda: self.ask({**OTHER, "run_id": run_id}),
            offsets=(0.0, self.rng.uniform(0.0, 0.05)),
        )
        if first[0] == second[0]:
            self.problem(run_id, f"two launches with one run id: accepted {first[0]} and {second[0]}")
        self.check(run_id, "SUCCEEDED", "calm" if first[0] else "other")

    def cache_loss_then_resume(self, run_id: str) -> None:
        run_id = self.fail_by_cache_loss(run_id)
        ok, body = self.ask({"action": "resume", "run_id": run_id})
        if not ok:
            self.problem(run_id, f"one resume after a cache loss was refused: {body}")
        self.check(run_id, "SUCCEEDED", "calm")

    def launch_killed(self, run_id: str) -> None:
        ok, _ = self.ask_killed({**REQUEST, "run_id": run_id}, self.rng.uniform(0.0, 0.8))
        if not ok:  # killed: the user sends the same request again
            ok, body = self.ask({**REQUEST, "run_id": run_id})
            item = self.item(run_id)
            # Refused as "already exists" is right when the first attempt got its hand-off out just
            # before it died (its chain has moved, or ended): then the run is launched (and must end
            # as its twin below). The attempt may have died before it noted the hand-off done.
            moved = item is not None and ("handoff" not in item or item["status"] == "SUCCEEDED")
            launched = moved and "already exists" in str(body)
            if not ok and not launched:
                self.problem(run_id, f"the retried launch was refused: {str(body)[:300]}; {brief(item)}")
        self.check(run_id, "SUCCEEDED", "calm")

    def resume_killed(self, run_id: str) -> None:
        run_id = self.fail_by_cache_loss(run_id)
        ok, _ = self.ask_killed({"action": "resume", "run_id": run_id}, self.rng.uniform(0.0, 0.8))
        if not ok:  # killed: the user sends the same request again
            ok, body = self.ask({"action": "resume", "run_id": run_id})
            item = self.item(run_id)
            # Refused as RUNNING or SUCCEEDED is right when the first attempt got its hand-off out
            # just before it died: then the run is resumed (and must end as its twin below).
            resumed = item is not None and (
                item["status"] == "SUCCEEDED" or ("handoff" not in item and item["status"] == "RUNNING")
            )
            if not ok and not (resumed and any(f"is {s};" in str(body) for s in ("RUNNING", "SUCCEEDED"))):
                self.problem(run_id, f"the retried resume was refused: {str(body)[:300]}; {brief(item)}")
        self.check(run_id, "SUCCEEDED", "calm")

    def forged_events(self, run_id: str) -> None:
        """While the run trains, events it did not send: each answered as an error, the run's status
        unchanged, no message; the run ends identical to its twin."""
        ok, body = self.ask({**REQUEST, "run_id": run_id})
        assert ok, body
        lam = aws("lambda", self.cloud_env)
        kinds: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
            lambda good: {**good, "layer": 99},  # the next seq, a layer the plan has not
            lambda good: {**good, "state": "finish"},  # the next seq, the wrong state
            lambda good: {**good, "epoch": 5},  # the next seq, the wrong epoch
            lambda good: {**good, "seq": good["seq"] + 7},  # ahead of the run
            lambda good: {**good, "seq": max(0, good["seq"] - 3)},  # behind it
            lambda good: {**good, "run_id": "no-such-run"},  # another run's id
            lambda good: {**good, "extra": 1},  # malformed: a field no event has
            lambda good: {k: v for k, v in good.items() if k != "seq"},  # malformed: a field missing
        ]
        self.rng.shuffle(kinds)
        points = sorted(self.rng.randrange(2, 30) for _ in kinds)
        for kind, point in zip(kinds, points, strict=True):  # every kind once, at seeded points
            self.wait_progress(run_id, point)
            item = self.item(run_id) or {}
            nxt = int(item.get("last_seq", -1)) + 1
            forged = kind({"state": "forward", "run_id": run_id, "epoch": 0, "layer": 1, "batch": 0, "seq": nxt})
            self.figures.forged += 1
            status_before = (self.item(run_id) or {}).get("status")
            resp = lam.invoke(FunctionName=self.stack["TRAINER_FUNCTION_NAME"], Payload=json.dumps(forged).encode())
            answer = resp["Payload"].read()
            status_after = (self.item(run_id) or {}).get("status")
            if "FunctionError" not in resp and b"error" not in answer.lower():
                self.problem(run_id, f"forged event {forged} was not answered as an error: {answer[:200]!r}")
            if status_after != status_before and status_after != "SUCCEEDED":
                self.problem(run_id, f"forged event {forged} changed the status {status_before} -> {status_after}")
        self.check(run_id, "SUCCEEDED", "calm")
        item = self.item(run_id) or {}
        if item.get("failure_reason"):
            self.problem(run_id, f"a forged event left a failure reason: {item['failure_reason']}")


SCENARIOS = (
    "launch_vs_cancel",
    "cancel_vs_finish",
    "resume_vs_cancel",
    "two_launches",
    "cache_loss_then_resume",
    "launch_killed",
    "resume_killed",
    "forged_events",
)


def test_the_control_plane_campaign(cloud, cloud_env, chaos_stack) -> None:
    rng = random.Random(SEED)
    campaign = Campaign(cloud, cloud_env, chaos_stack, rng)
    cloud.set_chaos(Chaos())
    # The shared stack's functions start afresh, as a new stack's would: the twins' environments
    # are the only warm ones when the disturbed runs (and their mixed fleet) begin.
    for function in (chaos_stack["TRAINER_FUNCTION_NAME"], chaos_stack["LAUNCH_FUNCTION_NAME"]):
        retire_environments(function)
    for twin, request in (("calm", REQUEST), ("other", OTHER)):
        ok, body = campaign.ask({**request, "run_id": f"twin-{twin}"})
        assert ok, body
        item = campaign.settle(f"twin-{twin}")
        assert item is not None and item["status"] == "SUCCEEDED", item
        model = campaign.model(f"twin-{twin}")
        assert model is not None
        campaign.twins[twin] = model
        campaign.steps = progress(item) + 1
    calm, other = campaign.twins["calm"], campaign.twins["other"]
    assert not all(np.array_equal(calm[k], other[k]) for k in calm)
    chosen = [s for s in os.environ.get("LNN_CAMPAIGN_SCENARIOS", "").split(",") if s] or list(SCENARIOS)
    assert set(chosen) <= set(SCENARIOS), f"LNN_CAMPAIGN_SCENARIOS names no scenario of {SCENARIOS}"
    plan = [name for _ in range(ROUNDS) for name in chosen]
    rng.shuffle(plan)
    # The disturbed runs' environments start on a mixed fleet; the twins' did not.
    cloud.reset_stats()
    cloud.set_chaos(Chaos(seed=SEED, hosts=FLEET))
    try:
        for number, name in enumerate(plan):
            getattr(campaign, name)(f"c{SEED}-{number}-{name.replace('_', '-')}"[:60])
    finally:
        cloud.set_chaos(Chaos())
    campaign.check_messages()
    assert_ran_pinned_on_a_mixed_fleet(cloud.stats())
    REPORT.control_plane.append(f"seed {SEED}, rounds {ROUNDS}: {campaign.figures.line()}")
    print(f"\n[control-plane campaign, seed {SEED}] {campaign.figures.line()}")
    for problem in campaign.figures.problems:
        print(f"  problem: {problem}")
    if campaign.figures.problems:
        pytest.fail(f"{len(campaign.figures.problems)} problem(s): " + "; ".join(campaign.figures.problems[:10]))

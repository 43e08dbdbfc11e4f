"""Driving a run through the real handlers with the local invoker, with optional disturbances."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np

from trainer import model_file
from trainer.data.loader import load_raw, prepare
from trainer.handlers import trainer as trainer_handler
from trainer.local import runner
from trainer.nn import monolithic
from trainer.nn.init import initialise


class InjectedFault(RuntimeError):
    """A crash the test causes on purpose."""


def run_to_end(
    stack: runner.LocalStack,
    payload: dict[str, Any],
    pick: Callable[[list], int] | None = None,
    max_deliveries: int = 100_000,
) -> tuple[str, int]:
    """Launch and deliver until the queue is empty; a failed delivery is redelivered (Lambda's
    retry). Returns (run_id, deliveries)."""
    stack.invoker.queue.clear()
    run_id = runner.launch(stack, payload)["run_id"]
    deliveries = 0
    queue = stack.invoker.queue
    while queue:
        index = pick(list(queue)) if pick else 0
        event = queue[index]
        del queue[index]
        deliveries += 1
        assert deliveries < max_deliveries, "the chain does not end"
        try:
            trainer_handler.run(event, runner.LocalContext(), stack.services)
        except trainer_handler.StepFailed as exc:
            if not isinstance(exc.__cause__, InjectedFault):
                raise
            queue.appendleft(event)
    return run_id, deliveries


def deliver_all(stack: runner.LocalStack, limit: int | None = None) -> int:
    """Deliver queued events in order (at most `limit`); returns how many were delivered."""
    delivered = 0
    while stack.invoker.queue and (limit is None or delivered < limit):
        trainer_handler.run(stack.invoker.queue.popleft(), runner.LocalContext(), stack.services)
        delivered += 1
    return delivered


class FaultReport:
    """Counts for the fault-injection suite, printed at the end of the test session."""

    def __init__(self) -> None:
        self.runs = self.faults = self.identical = 0
        self.copies: list[tuple[str, object, bool]] = []  # (scenario, dispatcher figures, identical)
        self.campaigns: list[tuple[str, dict, bool]] = []  # (campaign, local cloud stats, identical)

    def record(self, faults: int, identical: bool) -> None:
        self.runs += 1
        self.faults += faults
        self.identical += int(identical)

    def record_copies(self, scenario: str, figures: object, identical: bool) -> None:
        self.copies.append((scenario, figures, identical))

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


def final_params(stack: runner.LocalStack, run_id: str) -> dict[str, np.ndarray]:
    blob = stack.services.blob_store.get(f"models/{run_id}/model.npz")
    _, params, _, _ = model_file.load(blob)
    return params


def monolithic_reference(payload: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[float]]:
    dtype = payload.get("dtype", "float64")
    ds = prepare(load_raw(payload["dataset"]), payload.get("normalize", "auto"), dtype)
    n = len(payload["neurons"])
    sizes = [ds.features] + [payload["neurons"][f"layer{i}"] for i in range(1, n + 1)]
    params = initialise(sizes, payload.get("init", "scaled_normal"), payload.get("seed", 1), dtype)
    return monolithic.train(
        ds.x_train,
        ds.y_train,
        params,
        [payload["activations"][f"layer{i}"] for i in range(1, n + 1)],
        payload["epochs"],
        payload["learning_rate"],
        payload.get("optimizer", "gd"),
        payload.get("l2", 0.0),
        payload.get("batch_size"),
        payload.get("seed", 1),
    )


class Faults:
    """Raises InjectedFault at random points around a step's I/O, with a seeded RNG."""

    def __init__(self, stack: runner.LocalStack, probability: float, seed: int):
        self.rng = random.Random(seed)
        self.probability = probability
        self.injected = 0
        self.stack = stack
        self._saved: list[tuple[object, str, object]] = []

    def _maybe(self) -> None:
        if self.rng.random() < self.probability:
            self.injected += 1
            raise InjectedFault("injected crash")

    def _wrap(self, owner: object, name: str, before: bool, after: bool) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            if before:
                self._maybe()
            result = original(*args, **kwargs)
            if after:
                self._maybe()
            return result

        self._saved.append((owner, name, original if name in vars(owner) else None))
        setattr(owner, name, wrapped)

    def __enter__(self) -> Faults:
        svc = self.stack.services
        self._wrap(svc.tensor_store, "snapshot", before=True, after=False)
        self._wrap(svc.tensor_store, "commit", before=True, after=True)  # after = crash once applied
        self._wrap(svc.tensor_store, "claim", before=False, after=True)
        self._wrap(svc.tensor_store, "mark_done", before=True, after=True)
        self._wrap(svc.invoker, "invoke_async", before=True, after=True)
        self._wrap(svc.run_store, "put_epochs", before=True, after=False)
        self._wrap(svc.run_store, "record_progress", before=True, after=False)
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            if original is None:
                delattr(owner, name)  # the instance attribute shadowed the class method
            else:
                setattr(owner, name, original)

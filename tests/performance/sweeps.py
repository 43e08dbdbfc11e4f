"""The sweep section of the bench: a 24-trial random sweep with ASHA against the same 24 trials
trained to the end, both through LaunchLambda and the TrainerLambda on the local cloud (the bench's
stack). Reports the early-stopped sweep's best validation accuracy against the best of the full
trials, the compute it used (epochs run), and its wall time and cost modelled on Lambda with all
trials running at once.

The Lambda service holds the trainer's events during a sweep and the section delivers them first in,
first out, one at a time, in the functions' own environments. ASHA's decisions depend on the order
in which the trials' rung results arrive: delivering one event at a time fixes every order but that
of the first trials' start events (the launch starts them side by side), so the epochs run and the
best score still vary from one bench to the next (2225 and 1800 of 7200 epochs in two runs of the
same arithmetic), and simulated_orders replays 200 orders on the full trials' curves to show the
spread. The section's figures are counts and a model of every trial at once, which two shared cores
could not run as 24 environments anyway. Sweeps delivered concurrently, under chaos, are tested in
tests/integration/test_sweep_on_lambda.py.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tests.performance import cloud, runs
from tests.support.requests import network, random_sweep
from trainer.data.builtin import moons
from trainer.local.cloud_runner import invoke_launch
from trainer.sweep import asha, scheduler
from trainer.vocabulary import RungDecision

TRIALS = 24
EXAMPLES = 4000  # moons: 3000 training (600 of them held out for validation), 1000 test


def sweep_request(
    dataset: str, sweep_id: str, early_stopping: bool, epochs: int, max_concurrency: int, trials: int = TRIALS
) -> dict[str, Any]:
    base = network(
        dataset,
        (16, 8, 1),
        ("tanh", "relu", "sigmoid"),
        epochs=epochs,
        learning_rate=0.01,
        batch_size=256,
        init="he",
        checkpoint_every=0,
    )
    space = {
        "learning_rate": {"log_uniform": [1e-4, 1e-1]},
        "optimizer": ["gd", "adam"],
        "neurons.layer1": [8, 16, 32],
        "l2": [0, 0.001, 0.01],
    }
    asha = {"early_stopping": {"asha": {"min_epochs": epochs // 12, "reduction_factor": 3}}} if early_stopping else {}
    return random_sweep(
        base,
        space,
        sweep_id=sweep_id,
        trials=trials,
        seed=1,
        max_concurrency=max_concurrency,
        validation_fraction=0.2,
        **asha,
    )


def _run(stack: cloud.BenchCloud, request: dict[str, Any]) -> dict[str, Any]:
    """Launch, then deliver the held events first in, first out (the trials' chains interleave)."""
    session = stack.session
    trainer = session.env["TRAINER_FUNCTION_NAME"]
    request = {**request, "base": {**request["base"], "dataset": stack.stage(request["base"]["dataset"])}}
    session.cloud.hold(trainer)
    try:
        started, launched_at = time.perf_counter(), time.time()
        invoke_launch(session, request)
        launch_s = time.perf_counter() - started
        invocations: Counter[str] = Counter()
        while held := session.cloud.held(trainer):
            event = held[0]
            invocations[event["payload"]["run_id"]] += 1
            ends = session.cloud.deliver(event["request_id"])["copies"]
            if any(end["outcome"] != "ok" for end in ends):
                raise RuntimeError(f"sweep {request['sweep_id']}: an event failed: {ends}")
        wall_s = time.perf_counter() - started
    finally:
        session.cloud.hold(trainer, False)
    status = scheduler.status(stack.services, request["sweep_id"])
    for row in status["leaderboard"]:
        row["invocations"] = invocations[row["run_id"]]
        row["start_s"] = float(stack.services.run_store.get_run(row["run_id"])["created_at"]) - launched_at
    return {"launch_s": launch_s, "wall_s": wall_s, **status}


def sweep_section(
    stack: cloud.BenchCloud, workdir: Path, say: Any, epochs: int = 300, hop_ms: float = 40.0, trials: int = TRIALS
) -> dict[str, Any]:
    path = workdir / "moons-4000.npz"
    np.savez(path, **moons(EXAMPLES))
    say(f"  sweep: {trials} random trials on moons ({EXAMPLES} examples), {epochs} epochs, ASHA and to the end")
    asha = _run(stack, sweep_request(str(path), "bench-asha", True, epochs, 8, trials))
    full = _run(stack, sweep_request(str(path), "bench-full", False, epochs, 8, trials))
    wide = _run(stack, sweep_request(str(path), "bench-wide", True, epochs, trials, trials))
    best_full = max(r["validation_accuracy"] for r in full["leaderboard"])
    best_asha = asha["summary"]["best_validation_accuracy"]
    epochs_asha = sum(r["epochs_run"] for r in asha["leaderboard"])
    epochs_full = sum(r["epochs_run"] for r in full["leaderboard"])
    # On Lambda with every trial at once (max_concurrency = trials): the launch starts them all;
    # each trial's chain then takes its own compute plus one hop per invocation; the sweep lasts
    # until its last trial ends.
    hop_s = hop_ms / 1000
    trial_s = [r["compute_s"] + r["invocations"] * hop_s for r in wide["leaderboard"]]
    sweep_s = max(r["start_s"] + t for r, t in zip(wide["leaderboard"], trial_s, strict=True))
    gb_s = sum(trial_s) * runs.TRAINER_MEMORY_MB / 1024 + wide["launch_s"] * runs.LAUNCH_MEMORY_MB / 1024
    requests = sum(r["invocations"] for r in wide["leaderboard"]) + 1
    curves = {r["trial"]: r["curve"] for r in full["leaderboard"]}
    return {
        "orders": simulated_orders(curves, epochs, epochs // 12, 3, 8),
        "trials": trials,
        "epochs": epochs,
        "by_state": asha["by_state"],
        "best_validation_asha": best_asha,
        "best_validation_full": best_full,
        "best_test_asha": asha["summary"]["best_test_accuracy"],
        "epochs_run_asha": epochs_asha,
        "epochs_run_full": epochs_full,
        "compute_share": epochs_asha / epochs_full,
        "compute_s_asha": sum(r["compute_s"] for r in asha["leaderboard"]),
        "compute_s_full": sum(r["compute_s"] for r in full["leaderboard"]),
        "launch_s": wide["launch_s"],
        "wide_by_state": wide["by_state"],
        "modelled_sweep_s": sweep_s,
        "modelled_slowest_trial_s": max(trial_s),
        "modelled_wall_ratio": sweep_s / max(trial_s),
        "cost": {
            "gb_s": gb_s,
            "requests": requests,
            "lambda_compute": gb_s * runs.PRICES["lambda_gb_s"],
            "lambda_requests": requests * runs.PRICES["lambda_request"],
            "total_lambda": gb_s * runs.PRICES["lambda_gb_s"] + requests * runs.PRICES["lambda_request"],
        },
        "measured_wall_s": {"asha": asha["wall_s"], "full": full["wall_s"], "wide": wide["wall_s"]},
    }


def simulated_orders(
    curves: dict[int, list[float]], epochs: int, min_epochs: int, factor: int, slots: int, orders: int = 200
) -> dict[str, Any]:
    """ASHA's share of the epochs and its best score over many arrival orders, replayed on the
    full trials' own validation curves (a trial's curve does not depend on the others): which trials
    stop depends on the order they reach a rung, and one run shows one order."""
    rungs = asha.rungs(min_epochs, factor, epochs)
    best_full = max(curve[-1] for curve in curves.values())
    shares, gaps = [], []
    for seed in range(orders):
        rng = random.Random(seed)
        recorded: dict[int, list[float]] = {rung: [] for rung in rungs}
        pending, events, done = sorted(curves), [], {}
        for _ in range(min(slots, len(pending))):
            trial = pending.pop(0)
            heapq.heappush(events, (rungs[0] + rng.random(), trial, 0))
        while events:
            now, trial, k = heapq.heappop(events)
            value = curves[trial][rungs[k] - 1]
            goes_on = asha.decide(value, recorded[rungs[k]], factor) is RungDecision.CONTINUE
            recorded[rungs[k]].append(value)
            if goes_on and k + 1 < len(rungs):
                heapq.heappush(events, (now + rungs[k + 1] - rungs[k] + rng.random(), trial, k + 1))
                continue
            done[trial] = epochs if goes_on else rungs[k]
            if pending:
                heapq.heappush(events, (now + done[trial] - rungs[k] + rungs[0] + rng.random(), pending.pop(0), 0))
        shares.append(sum(done.values()) / (epochs * len(curves)))
        gaps.append(best_full - max(curves[t][-1] for t, e in done.items() if e == epochs))
    return {"orders": orders, "share_mean": float(np.mean(shares)), "share_max": max(shares), "gap_max": max(gaps)}


def render(result: dict[str, Any]) -> list[str]:
    r = result
    cost = r["cost"]
    return [
        f"Sweep: {r['trials']} random trials, {r['epochs']} epochs, ASHA vs every trial to the end",
        f"  best validation accuracy: ASHA {r['best_validation_asha']:.4f}, to the end {r['best_validation_full']:.4f}"
        f" (test {r['best_test_asha']:.4f}); max_concurrency 8, trials {r['by_state']}",
        f"  compute: {r['epochs_run_asha']} of {r['epochs_run_full']} epochs ({r['compute_share']:.0%}); "
        f"{r['compute_s_asha']:.1f} s of {r['compute_s_full']:.1f} s",
        f"  over {r['orders']['orders']} arrival orders replayed on the full trials' curves: ASHA's share "
        f"{r['orders']['share_mean']:.0%} on average, at most {r['orders']['share_max']:.0%}; its best at most "
        f"{r['orders']['gap_max']:.4f} below the best to the end",
        f"  modelled on Lambda, all {r['trials']} trials at once ({r['wide_by_state']}): "
        f"sweep {r['modelled_sweep_s']:.1f} s, slowest trial "
        f"{r['modelled_slowest_trial_s']:.1f} s ({r['modelled_wall_ratio']:.2f}x; launch {r['launch_s']:.2f} s); "
        f"cost ${cost['total_lambda']:.5f} ({cost['gb_s']:.1f} GB-s, {cost['requests']} requests)",
    ]


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The sweep's targets in the report's form: the figure, the bound, met or not."""
    r = result
    figures = {
        "sweep: best of ASHA below the best to the end (validation accuracy)": (
            r["best_validation_full"] - r["best_validation_asha"],
            0.01,
            "",
        ),
        "sweep: ASHA's epochs / the trials' to the end": (r["compute_share"], 0.40, "x"),
        "sweep: modelled wall / slowest trial (all at once)": (r["modelled_wall_ratio"], 1.5, "x"),
    }
    return {
        name: {"value": value, "bound": bound, "unit": unit, "met": bool(value <= bound)}
        for name, (value, bound, unit) in figures.items()
    }

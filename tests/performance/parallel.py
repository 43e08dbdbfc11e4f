"""The parallel section of the bench (issue 26): data-parallel runs measured on the local cloud, and
modelled on Lambda (tests/performance/parallel_model.py).

Measured here, through LaunchLambda and the TrainerLambda's execution environments as every chain of
the bench runs (tests/performance/cloud.py), float32, the same request for every N:

- the MNIST-shaped workload (workloads.mnist: [784 -> 256 -> 128 -> 10], Adam, mini-batch 128) with
  N = 1, 2, 4 workers (1 is the fused chain): wall time, the math (the slowest worker's), the time
  outside it, and the bytes each worker moves through the cache per step;
- the large workload: the MNIST-shaped training set tiled `large_factor` times (8: 480,000 x 784),
  the same network, full batch, with N = 1 and 2; its speedup is the measured target;
- the stall one SIGKILLed worker causes: the MNIST-shaped run with the most workers, its last worker's
  execution environment killed (SIGKILL, from this process) once it has gathered a third of the
  steps, the function's retries off (on AWS the retry of a failed asynchronous event comes after
  about a minute); the others' step times around the kill, from the stamps the workers write as
  they go (bench_functions.py).

PyTorch (2 threads, .venv-torch) trains the large workload's request on this machine; the modelled
16-worker run is compared with it. All N run one after another on warm environments: a small
data-parallel run first warms as many as the most workers need, so no timed run includes a start-up.
What was measured is then analysed (`analyse`, pure): a saved run can be analysed again under other
assumptions (`python -m tests.performance.parallel bench-results.json --function-mbps 300`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tests.performance import cloud, parallel_model, runs, workloads
from trainer.aws import client
from trainer.data.loader import load_raw, prepare, read_located
from trainer.parallel import launching
from trainer.parallel.admission import STATE_SLOTS, parameter_count
from trainer.parallel.shards import MAX_WORKERS
from trainer.request import TrainingRequest, estimate_bytes

DTYPE: Literal["float32"] = "float32"
TARGET_SPEEDUP_N2 = 1.6
TARGET_EFFICIENCY_N16 = 0.70
TARGET_SYNC_N16_S = 0.025
TARGET_VS_TORCH = 4.0
TARGET_STALL_S = 5.0
GRADIENT_1MB = 1_000_000
DEFAULT_TRAINER_MB = runs.TRAINER_MEMORY_MB


def warm_up(workers: int) -> dict[str, Any]:
    """A small data-parallel run: `workers` execution environments busy at once, so that many stay warm."""
    chain_only = {"chain"}  # the chain's own setting: a data-parallel run has workers instead
    return {**{k: v for k, v in cloud.WARM_UP.items() if k not in chain_only}, "workers": workers}


def large_request(network: dict[str, Any]) -> dict[str, Any]:
    """The large workload's network: the MNIST-shaped one, full batch (one step per epoch)."""
    return {k: v for k, v in network.items() if k != "batch_size"}


def measure(
    stack: cloud.BenchCloud, dataset: str, network: dict[str, Any], epochs: int, workers: int, during: Any = None
) -> dict[str, Any]:
    """One run of the request with `workers` workers (1: the fused chain) on the bench's cloud."""
    payload = {"dataset": dataset, **network, "epochs": epochs, "dtype": DTYPE}
    if workers > 1:
        payload["workers"] = workers
    run = stack.run(payload, during=during)
    lines = run.trainer_lines
    request = TrainingRequest(**{**payload, "dataset": "x"})
    examples = int(np.asarray(load_raw(dataset)["train_set_y"]).reshape(-1).shape[0])
    batch = min(request.batch_size or examples, examples)
    steps = epochs * math.ceil(examples / batch)
    by_worker: dict[int, float] = {}
    for line in lines:
        key = int(line.get("worker") or 0)
        by_worker[key] = by_worker.get(key, 0.0) + line["compute_s"]
    math_s = max(by_worker.values())
    reduce_steps = sum(line["reduce_steps"] for line in lines)
    moved = sum(line["reduce_bytes_sent"] + line["reduce_bytes_received"] for line in lines)
    item = stack.services.run_store.get_run(run.run_id)
    read, written = launch_bytes(dataset, workers)
    return {
        "workers": workers,
        "run_id": run.run_id,
        "epochs": epochs,
        "examples": examples,
        "batch": batch,
        "steps": steps,
        "wall_s": run.wall_s,
        "launch_s": run.launch_s,
        "launch_read_bytes": read,  # from the dataset object in S3
        "launch_written_bytes": written,  # to the cache
        "math_s": math_s,  # the slowest worker's wall time in its math
        "outside_s": run.wall_s - math_s,
        "math_cpu_s": sum(line["compute_cpu_s"] for line in lines),  # every worker's, thread CPU
        "invocations": len(lines),
        "invocations_by_worker": {w: sum(1 for line in lines if int(line.get("worker") or 0) == w) for w in by_worker},
        "reduce_bytes_per_worker_step": moved / reduce_steps if reduce_steps else 0.0,
        "data_bytes": sum(line["data_bytes"] for line in lines),
        # where the time outside the math goes, summed over the invocations (the workers' overlap)
        "data_load_s": sum(line["data_load_s"] for line in lines),
        "redis_s": sum(line["redis_s"] for line in lines),
        "aws_s": sum(line["aws_s"] for line in lines),
        "servers_cpu_s": run.servers_cpu_s,
        "env_starts": run.service["environments_started"],
        "env_start_s": run.env_start_s,
        "final_cost": float(item["final_cost"]),
        "test_accuracy": float(item["test_accuracy"]),
        "stamps": stack.stamps(run.run_id) if workers > 1 else [],
    }


class _LocalObject:
    """A dataset file as LaunchLambda's ranged reads see its S3 object (trainer.data.direct.RangedObjects),
    counting the bytes they fetch."""

    def __init__(self, path: str) -> None:
        self.body, self.fetched = Path(path).read_bytes(), 0

    def head(self, bucket: str, key: str) -> tuple[int, str, str | None]:
        return len(self.body), '"local"', None

    def read_range(self, bucket: str, key: str, start: int, stop: int, etag: str) -> bytes:
        self.fetched += stop - start
        return self.body[start:stop]


def launch_bytes(dataset: str, workers: int) -> tuple[int, int]:
    """(bytes LaunchLambda reads from the dataset object, bytes of data it writes to the cache) for the
    request with `workers` workers: its own reads and its own arrays (trainer.data.loader,
    trainer.parallel.launching), run here on the file."""
    objects = _LocalObject(dataset)
    found = read_located(f"s3://bench/datasets/{Path(dataset).name}", objects, None, None, "auto", 0.0, workers)
    if found is not None:  # the workers read the examples from the object
        dataset_ = prepare(found[0], "auto", DTYPE, None, found[1])
        return objects.fetched, sum(int(a.nbytes) for a in launching.data_arrays(dataset_).values())
    dataset_ = prepare(load_raw(dataset), "auto", DTYPE)
    arrays = launching.data_arrays(dataset_) if workers > 1 else dataset_.arrays()
    return len(objects.body), sum(int(a.nbytes) for a in arrays.values())


@contextlib.contextmanager
def retries_off(stack: cloud.BenchCloud) -> Iterator[None]:
    """The trainer's asynchronous retries off while the block runs (a killed worker stays lost, as
    on AWS for the minute before its retry), then as they were."""
    lam = client("lambda")
    name = stack.session.env["TRAINER_FUNCTION_NAME"]
    config = lam.get_function_event_invoke_config(FunctionName=name)
    keep = {k: config[k] for k in ("MaximumEventAgeInSeconds", "DestinationConfig") if k in config}

    def put(retries: int) -> None:
        # Deleted first: moto keeps every put's config and answers with the first one.
        lam.delete_function_event_invoke_config(FunctionName=name)
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=retries, **keep)

    put(0)
    try:
        yield
    finally:
        put(config.get("MaximumRetryAttempts", 2))


def step_gaps(stamps: list[dict[str, Any]], worker: int) -> list[tuple[int, float, float]]:
    """(step, when it ended, how long since the worker's previous step ended) for one worker's steps."""
    mine = sorted((s["t"], s["step"]) for s in stamps if s["worker"] == worker and s["step"] is not None)
    return [(step, t, t - before) for (before, _), (t, step) in itertools.pairwise(mine)]


def stall(stamps: list[dict[str, Any]], workers: int, victim: int, killed_at: float) -> dict[str, Any]:
    """The others' steps around the kill: the calm step (median before it), the longest step that
    ended after it (the stall: no step ends at any of them meanwhile), the step it was and how long
    the step before it took (the takeover's bound is three times that, if longer than its 2 s), how long
    after the kill it ended, and the steps after it."""
    before: list[float] = []
    after: list[dict[str, Any]] = []
    later: list[float] = []
    for w in range(workers):
        if w == victim:
            continue
        gaps = step_gaps(stamps, w)
        before += [g for _, t, g in gaps if t < killed_at]
        ended_after = [(i, t, g) for i, (_, t, g) in enumerate(gaps) if t >= killed_at]
        if ended_after:
            i, t, g = max(ended_after, key=lambda e: e[2])
            after.append(
                {
                    "worker": w,
                    "step": gaps[i][0],
                    "s": g,
                    "previous_s": gaps[i - 1][2] if i else None,
                    "after_kill_s": t - killed_at,
                }
            )
            later += [g for _, t2, g in ended_after if t2 > t]
    longest = max(after, key=lambda a: a["s"]) if after else None
    return {
        "calm_step_s": statistics.median(before) if before else float("nan"),
        "stall_s": longest["s"] if longest else float("nan"),
        "stall_at": longest,
        "stalls": after,
        "steps_after_s": statistics.median(later) if later else float("nan"),
        "steps_after": len(later),
    }


def kill_run(
    stack: cloud.BenchCloud, dataset: str, network: dict[str, Any], epochs: int, workers: int, kill_step: int
) -> dict[str, Any]:
    """The run with its last worker's execution environment SIGKILLed once it has gathered `kill_step`."""
    victim = workers - 1
    state: dict[str, Any] = {}

    def during(run_id: str) -> None:
        if state:
            return
        for s in stack.stamps(run_id):
            if s["worker"] == victim and s["step"] is not None and s["step"] >= kill_step:
                os.kill(int(s["pid"]), signal.SIGKILL)
                state.update(killed_at=time.time(), step=s["step"], pid=s["pid"])
                return

    with retries_off(stack):
        row = measure(stack, dataset, network, epochs, workers, during)
    if not state:
        raise RuntimeError(f"worker {victim} never reached step {kill_step}: nothing was killed")
    row.update(victim=victim, killed_at_step=state["step"], **stall(row["stamps"], workers, victim, state["killed_at"]))
    return row


def memory_mb(network: dict[str, Any], features: int, examples: int, workers: int) -> int:
    """The function's memory size a worker needs for its share (the launch's own estimate, 80% of the
    size at most), and never below the stack's default."""
    request = TrainingRequest(dataset="x", **network, epochs=1, dtype=DTYPE, workers=min(workers, MAX_WORKERS))
    needed = estimate_bytes(request, features, examples) / 0.8 / 2**20
    return max(DEFAULT_TRAINER_MB, int(math.ceil(needed / 64) * 64))


def model_inputs(
    rows: list[dict[str, Any]], network: dict[str, Any], features: int, shard_fixed_s: float
) -> parallel_model.Workload:
    chain = next(r for r in rows if r["workers"] == 1)
    parallel = [r for r in rows if r["workers"] > 1]
    sizes, _ = workloads.network_shape(network)
    examples = chain["examples"]
    return parallel_model.Workload(
        parameters=parameter_count([features, *sizes]),
        itemsize=np.dtype(DTYPE).itemsize,
        state_slots=STATE_SLOTS[network.get("optimizer", "gd")],
        steps=chain["steps"],
        global_batch=chain["batch"],
        chain_step_s=chain["math_cpu_s"] / chain["steps"],
        worker_math_s=statistics.mean(r["math_cpu_s"] / r["steps"] for r in parallel),
        shard_fixed_s=shard_fixed_s,
        data_bytes=chain["data_bytes"],
        launch_s=chain["launch_s"],
        max_steps=TrainingRequest(dataset="x", **network, epochs=1).max_steps_per_invocation,
        memory_mb={n: memory_mb(network, features, examples, n) for n in parallel_model.MODELLED_WORKERS},
        launch_bytes=moved(chain),
        # A saved run from before the launch's bytes were recorded: its launches as the chain's.
        workers_launch_s=statistics.mean(r["launch_s"] for r in parallel) if "launch_read_bytes" in chain else None,
        workers_launch_bytes=max(moved(r) for r in parallel) if "launch_read_bytes" in chain else None,
    )


def moved(row: dict[str, Any]) -> int:
    """The bytes a run's launch moved: read from S3 and written to the cache (0 when not recorded)."""
    return int(row.get("launch_read_bytes", 0) + row.get("launch_written_bytes", 0))


def fitted_math(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> parallel_model.Math:
    """The math per step as a function of the batch, from the two workloads' measured runs."""

    def point(rows: list[dict[str, Any]]) -> tuple[int, float, float]:
        chain = next(r for r in rows if r["workers"] == 1)
        workers = statistics.mean(r["math_cpu_s"] / r["steps"] for r in rows if r["workers"] > 1)
        return chain["batch"], chain["math_cpu_s"] / chain["steps"], workers

    return parallel_model.Math.fit(point(small), point(large))


def section(
    stack: cloud.BenchCloud,
    workdir: Path,
    say: Any,
    mnist: workloads.Workload,
    epochs: int = 1,
    workers: tuple[int, ...] = (1, 2, 4),
    large_factor: int = 8,
    large_epochs: int = 2,
    assumptions: parallel_model.Assumptions | None = None,
) -> dict[str, Any]:
    """Everything measured (`measured`), then what the model makes of it (`analyse`)."""
    raw = load_raw(mnist.dataset)
    features = int(np.prod(np.asarray(raw["train_set_x"]).shape[1:]))
    network = mnist.network
    most = max(workers)
    stack.run(warm_up(most))  # every worker's environment warm, as for the chains: no start-up in a timed run
    say(f"  parallel: {mnist.name}, {epochs} epoch(s), N = {', '.join(map(str, workers))}")
    small = []
    for n in workers:
        small.append(measure(stack, mnist.dataset, network, epochs, n))
        say(f"    N={n}: {small[-1]['wall_s']:.2f} s, math {small[-1]['math_s']:.2f} s")

    big_path = str(workloads.tiled(mnist.dataset, large_factor, workdir / f"mnist-x{large_factor}.npz"))
    big_network = large_request(network)
    large = []
    say(f"  parallel: {mnist.name} x{large_factor}, full batch, {large_epochs} epoch(s), N = 1, 2")
    for n in (1, 2):
        large.append(measure(stack, big_path, big_network, large_epochs, n))
        say(f"    N={n}: {large[-1]['wall_s']:.2f} s, math {large[-1]['math_s']:.2f} s")

    kill_step = max(1, small[0]["steps"] // 3)
    killed = kill_run(stack, mnist.dataset, network, epochs, most, kill_step)
    say(
        f"    N={most}, worker {killed['victim']} killed at step {killed['killed_at_step']}: "
        f"stall {killed['stall_s']:.2f} s"
    )
    torch: dict[str, Any] | None = None
    if runs.torch_python() is not None:
        done = runs.run_torch(big_path, big_network, large_epochs, DTYPE, 2, workdir)
        torch = {k: done[k] for k in ("wall_s", "train_s", "test_accuracy", "final_cost", "torch")}
        say(f"    PyTorch 2 threads: {torch['wall_s']:.2f} s")
    for row in (*small, *large, killed):
        row.pop("stamps", None)
    measured = {
        "features": features,
        "network": network,
        "note": mnist.note,
        "epochs": epochs,
        "large_factor": large_factor,
        "large_epochs": large_epochs,
        "mnist": small,
        "large": large,
        "killed": killed,
        "torch": torch,
    }
    return analyse(measured, assumptions or parallel_model.Assumptions())


def analyse(measured: dict[str, Any], a: parallel_model.Assumptions) -> dict[str, Any]:
    """The section's result from what it measured: pure, so a saved bench-results.json can be
    analysed again under other assumptions (`python -m tests.performance.parallel`)."""
    features, network = measured["features"], measured["network"]
    small, large, killed = measured["mnist"], measured["large"], measured["killed"]
    big_network = large_request(network)
    fitted = fitted_math(small, large)
    small_inputs = model_inputs(small, network, features, fitted.shard_fixed_s)
    large_inputs = model_inputs(large, big_network, features, fitted.shard_fixed_s)
    one_mb = [
        {"workers": n, **vars(parallel_model.sync(GRADIENT_1MB // 4, 4, n, STATE_SLOTS["adam"], a))}
        for n in parallel_model.MODELLED_WORKERS[1:]
    ]
    examples = large[0]["examples"]
    one_trainer = estimate_bytes(TrainingRequest(dataset="x", **big_network, epochs=1, dtype=DTYPE), features, examples)
    sizes = [features, *workloads.network_shape(network)[0]]
    for row in (*small, *large, killed):
        if row["workers"] > 1:  # what the reduction's layout says a worker moves, beside what it moved
            sent, received = parallel_model.lnn_traffic(
                parallel_model.layout_chunks(sizes, row["workers"]), 4, STATE_SLOTS["adam"]
            )
            row["reduce_bytes_modelled"] = sent + received
    calm = _row(small, killed["workers"])
    return {
        "measured": measured,
        "dtype": DTYPE,
        "assumptions": vars(a),
        "mnist": {
            "note": measured["note"],
            "epochs": measured["epochs"],
            "rows": small,
            "model": [vars(r) for r in parallel_model.model(small_inputs, a)],
            "inputs": vars(small_inputs),
        },
        "large": {
            "factor": measured["large_factor"],
            "examples": examples,
            "epochs": measured["large_epochs"],
            "rows": large,
            "speedup_n2": large[0]["wall_s"] / large[1]["wall_s"],
            "one_trainer_needs_mib": one_trainer / 2**20,
            "default_trainer_holds_it": one_trainer <= DEFAULT_TRAINER_MB * 2**20 * 0.8,
            "default_trainer_mb": DEFAULT_TRAINER_MB,
            "model": [vars(r) for r in parallel_model.model(large_inputs, a)],
            "inputs": vars(large_inputs),
        },
        "math": vars(fitted),
        "sync_1mb": one_mb,
        "break_even": [
            vars(r) for r in parallel_model.break_even(large_inputs.parameters, 4, large_inputs.state_slots, fitted, a)
        ],
        "stall": {
            **killed,
            "calm_wall_s": calm["wall_s"],
            "identical": killed["final_cost"] == calm["final_cost"],
            "bound_s": TARGET_STALL_S,
        },
        "torch": measured["torch"],
    }


def _row(rows: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    return next(r for r in rows if r["workers"] == workers)


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The section's targets in the report's form; `at_least` marks a figure that must reach its bound."""
    large = result["large"]
    n16 = _row(large["model"], 16)
    sync16 = _row(result["sync_1mb"], 16)
    torch = result["torch"]
    out: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float | None, bound: float, unit: str, at_least: bool = False, note: str = "") -> None:
        met = value is not None and (value >= bound if at_least else value <= bound)
        out[name] = {"value": value, "bound": bound, "unit": unit, "met": bool(met), "at_least": at_least}
        if note:
            out[name]["note"] = note

    check("parallel: large workload, N=2 vs N=1 measured here", large["speedup_n2"], TARGET_SPEEDUP_N2, "x", True)
    check(
        "parallel: modelled efficiency of the steps at N=16 (large workload)",
        n16["steps_efficiency"],
        TARGET_EFFICIENCY_N16,
        "",
        True,
    )
    check("parallel: modelled sync per step at N=16, 1 MB gradient", sync16["lnn_s"], TARGET_SYNC_N16_S, "s")
    check(
        "parallel: modelled N=16 run vs PyTorch 2 threads here (large workload)",
        torch["wall_s"] / n16["run_s"] if torch else None,
        TARGET_VS_TORCH,
        "x",
        True,
        "" if torch else ".venv-torch absent (make torch-venv)",
    )
    check(
        "parallel: stall after one SIGKILLed worker (longest step of the others)",
        result["stall"]["stall_s"],
        TARGET_STALL_S,
        "s",
    )
    return out


def _model_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"    {'N':>3}{'launch s':>9}{'step ms':>10}{'sync ms':>9}{'steps s':>10}{'run s':>9}{'speedup':>9}{'eff.':>7}"
        f"{'eff. steps':>11}{'invoc.':>7}{'GB-s':>9}{'cost $':>10}"
    ]
    for r in rows:
        lines.append(
            f"    {r['workers']:>3}{r.get('launch_s', 0.0):>9.2f}{r['step_s'] * 1e3:>10.2f}{r['sync_s'] * 1e3:>9.2f}"
            f"{r['steps_s']:>10.2f}"
            f"{r['run_s']:>9.2f}{r['speedup']:>9.2f}{r['efficiency']:>7.0%}{r['steps_efficiency']:>11.0%}"
            f"{r['invocations']:>7}{r['gb_s']:>9.1f}{r['cost']:>10.5f}"
        )
    return lines


def _outside(name: str, row: dict[str, Any]) -> str:
    """Where a run's time outside its math went: the launch, and over its invocations the data loads,
    Redis and the AWS calls ("" when the run did not record them)."""
    if "data_load_s" not in row:
        return ""
    return (
        f"{name} N={row['workers']}: launch {row['launch_s']:.2f} s, data load {row['data_load_s']:.2f} s, Redis "
        f"{row['redis_s']:.2f} s, AWS {row['aws_s']:.2f} s"
    )


def render(result: dict[str, Any]) -> list[str]:
    r, a = result, result["assumptions"]
    large, mnist, stall_ = r["large"], r["mnist"], r["stall"]
    holds = "can hold it" if large["default_trainer_holds_it"] else "cannot hold it: refused at launch"
    at = stall_.get("stall_at")  # runs measured before it was recorded have none
    where = (
        f" (worker {at['worker']}'s step {at['step']}, ending {at['after_kill_s']:.2f} s after the kill; its step "
        f"before took {at['previous_s'] * 1e3:.0f} ms)"
        if at and at.get("previous_s") is not None
        else ""
    )
    lines = [
        f"Data-parallel training ({r['dtype']}; the same request for every N; N = 1 is the fused chain): measured "
        "on the local cloud, each worker in its own execution environment, all of them on this machine's cores",
        f"  {'workload':<22}{'N':>3}{'wall s':>9}{'math s':>9}{'outside s':>10}{'steps':>7}{'invoc.':>7}"
        f"{'MB/worker/step':>15}{'(layout)':>9}{'final cost':>13}{'test acc':>9}",
    ]
    for name, block in (
        (f"mnist {mnist['rows'][0]['examples']:,}", mnist),
        (f"mnist x{large['factor']} {large['examples']:,}", large),
    ):
        for row in block["rows"]:
            modelled = row.get("reduce_bytes_modelled")
            moved = f"{row['reduce_bytes_per_worker_step'] / 1e6:.3f}" if row["workers"] > 1 else "-"
            lines.append(
                f"  {name:<22}{row['workers']:>3}{row['wall_s']:>9.2f}{row['math_s']:>9.2f}{row['outside_s']:>10.2f}"
                f"{row['steps']:>7}{row['invocations']:>7}{moved:>15}"
                f"{(f'{modelled / 1e6:.3f}' if modelled else '-'):>9}{row['final_cost']:>13.6f}"
                f"{row['test_accuracy']:>9.4f}"
            )
    parts = [_outside(name, row) for name, block in (("mnist", mnist), ("large", large)) for row in block["rows"]]
    if all(parts):  # runs measured before these sums were recorded have none
        lines.append("  outside the math, summed over the invocations (the workers' overlap): " + "; ".join(parts))
    lines += [
        "  math s = the slowest worker's time in its math (partials and its chunk's update; the chain's steps); "
        "outside s = wall - math s (the launch, data loads, the reduction's waits and transfers, hand-ons, the "
        "finish); MB/worker/step = what a worker moved through the cache per step, measured by the reduction "
        "store, and (layout) as parallel_model.lnn_traffic counts it for the run's layout",
        f"  large workload ({large['examples']:,} x 784, {large['epochs']} epoch(s) of full-batch Adam): N=2 is "
        f"{large['speedup_n2']:.2f}x as fast as N=1 here; one trainer of the stack's default "
        f"{large['default_trainer_mb']} MB {holds} (it needs about {large['one_trainer_needs_mib']:,.0f} MiB; "
        f"the launch allows 80% of {large['default_trainer_mb']} MiB); the bench's stack gives each trainer "
        "10,240 MB",
        "",
        f"Modelled on Lambda (function bandwidth {a['function_mbps']:g} Mbps both directions together, cache node "
        f"{a['node_gbps']:g} Gbps, Redis RTT {a['redis_rtt_ms']:g} ms x {a['round_trips_per_step']} a step, hop "
        f"{a['hop_ms']:g} ms; the math per step as measured here in thread CPU seconds, the chain's for N = 1 and "
        "the workers' summed and split N ways; each worker at the memory size its share needs, never below the "
        "stack's 2048 MB; N > 16 goes past today's 16 micro-shards, modelled as one micro-shard per worker, each "
        "adding its fixed cost; the launch as measured here plus the bytes it moves, read from S3 and written to "
        "the cache, at the function's bandwidth (N = 1: the whole set both ways; N > 1 on an uncompressed uint8 "
        "set: the labels, the test set and the file's metadata, the workers reading their examples from the "
        "object); the finish left out):",
        f"  large workload ({large['examples']:,} examples, {large['epochs']} epoch(s), full batch; speedup and eff. "
        "= of the whole run against the chain's, launch and data load included; eff. steps = the faster one-worker "
        "step (the chain's, or the micro-shards' math on one worker) / (N x the step)):",
        *_model_table(large["model"]),
        f"  MNIST-shaped ({mnist['rows'][0]['examples']:,} examples, {mnist['epochs']} epoch(s), batch "
        f"{mnist['rows'][0]['batch']}):",
        *_model_table(mnist["model"]),
        "",
        "  Sync per step for a 1 MB float32 gradient with Adam's state, LNN's reduce-scatter through the cache beside "
        "LambdaML's single summer (worker 0 takes every gradient and sends the sum back):",
        f"    {'N':>3}{'LNN ms':>9}{'full-duplex':>12}{'MB/worker':>10}{'LambdaML ms':>12}{'+ polling':>10}",
    ]
    for s in r["sync_1mb"]:
        lines.append(
            f"    {s['workers']:>3}{s['lnn_s'] * 1e3:>9.1f}{s['lnn_full_duplex_s'] * 1e3:>12.1f}"
            f"{s['lnn_bytes'] / 1e6:>10.2f}{s['lambdaml_s'] * 1e3:>12.1f}{s['lambdaml_polling_s'] * 1e3:>10.1f}"
        )
    m = r["math"]
    lines += [
        "",
        f"  When adding workers pays ({large['inputs']['parameters']:,} float32 parameters, Adam; the math per step "
        f"fitted to the two workloads: the chain {m['chain_fixed_s'] * 1e3:.2f} ms + "
        f"{m['chain_example_s'] * 1e6:.1f} us/example, the workers together {m['shard_fixed_s'] * 1e3:.2f} ms per "
        f"micro-shard + {m['example_s'] * 1e6:.1f} us/example): the smallest global batch (examples per step) with "
        "which",
        f"    {'N':>3}{'sync ms':>9}{'N beats 1':>11}{'N beats N/2':>13}{'70% efficient':>15}",
    ]

    def batch(value: int | None) -> str:
        return "never" if value is None else "any" if value == 1 else f"{value:,}"

    for b in r["break_even"]:
        lines.append(
            f"    {b['workers']:>3}{b['sync_s'] * 1e3:>9.1f}{batch(b['over_one']):>11}{batch(b['over_half']):>13}"
            f"{batch(b['efficient']):>15}"
        )
    lines += [
        "",
        f"  Stall after one SIGKILLed worker (N={stall_['workers']}, worker {stall_['victim']}'s environment killed at "
        f"step {stall_['killed_at_step']} of {stall_['steps']}, retries off): the others' longest step "
        f"{stall_['stall_s']:.2f} s{where} against a calm step of {stall_['calm_step_s'] * 1e3:.1f} ms; after it a "
        "step "
        f"takes {stall_['steps_after_s'] * 1e3:.1f} ms (the median of the others' {stall_['steps_after']} steps: each "
        f"of them computes the lost worker's share too); run {stall_['wall_s']:.2f} s against "
        f"{stall_['calm_wall_s']:.2f} s calm; final cost "
        f"{'identical to' if stall_['identical'] else 'NOT identical to'} the calm run's",
    ]
    torch = r["torch"]
    n16 = _row(large["model"], 16)
    if torch:
        lines.append(
            f"  PyTorch {torch['torch']} (2 threads, this machine) on the large workload's request: "
            f"{torch['wall_s']:.2f} s (test accuracy {torch['test_accuracy']:.4f}); modelled 16 workers: "
            f"{n16['run_s']:.2f} s = "
            f"{torch['wall_s'] / n16['run_s']:.2f}x faster"
        )
    else:
        lines.append(
            "  PyTorch: .venv-torch is absent (make torch-venv), so no comparison with the modelled 16 workers"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.performance.parallel bench-results.json [--function-mbps M] [--node-gbps G] ...`:
    the parallel section of a saved bench run analysed again, under other assumptions if given."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m tests.performance.parallel", description=main.__doc__)
    p.add_argument("results", type=Path)
    defaults = parallel_model.Assumptions()
    for name in ("function_mbps", "node_gbps", "redis_rtt_ms", "hop_ms"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    opts = p.parse_args(argv)
    saved = json.loads(opts.results.read_text())
    measured = saved["parallel"]["measured"]
    for row in measured["mnist"] + measured["large"] + [measured["killed"]]:
        row["invocations_by_worker"] = {int(k): v for k, v in row.get("invocations_by_worker", {}).items()}
    assumptions = parallel_model.Assumptions(
        function_mbps=opts.function_mbps, node_gbps=opts.node_gbps, redis_rtt_ms=opts.redis_rtt_ms, hop_ms=opts.hop_ms
    )
    result = analyse(measured, assumptions)
    print("\n".join(render(result)))
    print("\nTargets (figure vs bound):")
    for name, t in targets(result).items():
        print(target_line(name, t))
    return 0


def target_line(name: str, t: dict[str, Any]) -> str:
    """One target: met or not, its figure (or why there is none) and its bound, an upper one unless
    `at_least` (the bench's report prints its targets so: tests/performance/report.py)."""
    unit = t["unit"]
    figure = f"{t['value']:.4g}{unit}" if t["value"] is not None else f"no figure: {t.get('note', 'not measured')}"
    bound = f"at least {t['bound']:g}{unit}" if t.get("at_least") else f"bound {t['bound']:g}{unit}"
    return f"  {'met    ' if t['met'] else 'NOT MET'}  {name}: {figure} ({bound})"


if __name__ == "__main__":
    raise SystemExit(main())

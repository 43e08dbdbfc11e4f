"""`python -m trainer.bench` (`make bench`): the cat benchmark through the monolithic numpy trainer and
through the local chain (per_step and fused, float64 and float32), a modelled time on Lambda, the
Redis traffic of the hand-offs against what they strictly need, and how the time per epoch grows
with the data. Prints a table and writes it as JSON. Not a test: it measures; the tests assert.

What a row's wall time includes: from the request to the trained model. Monolithic: dataset load,
normalisation, initialisation, training, accuracy. Chain: the launch handler (validation, dataset
load, normalisation, initialisation, writes to Redis and DynamoDB) and every trainer invocation
(data load from Redis, steps, commits, hand-offs, per-epoch history and heartbeats in DynamoDB,
finish: accuracy, model to S3, SNS). Excluded: starting redis-server and moto server, and
provisioning their resources (once per bench, not per run).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # BLAS threads must be fixed before numpy loads (see --threads)
    _threads = "1"
    for _i, _arg in enumerate(sys.argv):
        if _arg == "--threads" and _i + 1 < len(sys.argv):
            _threads = sys.argv[_i + 1]
        elif _arg.startswith("--threads="):
            _threads = _arg.split("=", 1)[1]
    if _threads != "0":
        for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(_var, _threads)
    os.environ.setdefault("LNN_LOG_LEVEL", "WARNING")

import argparse
import contextlib
import json
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer import engine
from trainer.data.loader import load_raw, prepare
from trainer.nn import layers, monolithic
from trainer.nn.init import initialise
from trainer.statemachine import Plan
from trainer.stores.codec import encode

CAT_H5 = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "catvnoncat.h5"
CAT_NETWORK = {
    "neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1},
    "activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", "layer4": "sigmoid"},
    "learning_rate": 0.0075,
    "optimizer": "gd",
    "seed": 1,
    "init": "scaled_normal",
}
DEFAULT_EPOCHS = 2500
MODEL_ASSUMPTIONS = [
    "modelled Lambda time = chain compute (the trainer's steps as measured here, same per-core speed on "
    "Lambda, same BLAS threads) + hop latency x invocations + Redis time measured against the real local "
    "redis-server (TLS, loopback) + Redis network RTT x round trips + AWS API calls (DynamoDB, S3, SNS) "
    "x a per-call latency",
    "hop latency covers one asynchronous self-invocation: the Invoke API call, the async queue and a warm start",
    "warm reuse: the chain runs one invocation at a time, so the next one lands on the warm execution "
    "environment and finds the training data in its cache; the 'cold' column instead reloads the data from "
    "Redis in every invocation (the measured data-load time per invocation)",
    "no throttling, no retries, no cold start of the container image (a one-off of a few seconds)",
]


# -- measurement ---------------------------------------------------------------------------------------
@dataclass
class Meter:
    """What one chain run did: wrapped around the tensor store, the Redis client, the engine and botocore."""

    compute_s: float = 0.0
    redis_s: float = 0.0
    round_trips: int = 0
    aws_calls: int = 0
    aws_s: float = 0.0
    data_bytes: int = 0
    data_load_s: float = 0.0
    state_bytes: int = 0
    log: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)


@contextlib.contextmanager
def metered(store: Any) -> Iterator[Meter]:
    """Count and time everything a chain run does against Redis and AWS; restore it all afterwards."""
    import botocore.client
    import redis.client

    meter = Meter()
    client = store.client
    originals: list[tuple[Any, str, Any, bool]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        had_own = name in vars(owner) if not isinstance(owner, type) else True
        originals.append((owner, name, getattr(owner, name), had_own))
        setattr(owner, name, wrapper)

    def timed_rt(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.redis_s += time.perf_counter() - t
                meter.round_trips += 1

        return wrapper

    patch(client, "execute_command", timed_rt(client.execute_command))
    pipeline_execute = redis.client.Pipeline.execute

    def pipe_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return pipeline_execute(self, *args, **kwargs)
        finally:
            meter.redis_s += time.perf_counter() - t
            meter.round_trips += 1

    patch(redis.client.Pipeline, "execute", pipe_execute)

    api_call = botocore.client.BaseClient._make_api_call

    def counted_api_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return api_call(self, *args, **kwargs)
        finally:
            meter.aws_s += time.perf_counter() - t
            meter.aws_calls += 1

    patch(botocore.client.BaseClient, "_make_api_call", counted_api_call)

    run_step = engine.run_step

    def timed_step(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return run_step(*args, **kwargs)
        finally:
            meter.compute_s += time.perf_counter() - t

    patch(engine, "run_step", timed_step)

    def bytes_moved() -> int:
        return store.traffic.bytes_read + store.traffic.bytes_written

    def wrap_data(name: str) -> None:
        fn = getattr(store, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before, t = bytes_moved(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.data_bytes += bytes_moved() - before
                if name == "get_data":
                    meter.data_load_s += time.perf_counter() - t

        patch(store, name, wrapper)

    for name in ("put_data", "get_data"):
        wrap_data(name)

    def wrap_state(name: str, tensors_of: Any) -> None:
        fn = getattr(store, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before = bytes_moved()
            result = fn(*args, **kwargs)
            meter.state_bytes += bytes_moved() - before
            tensors = tensors_of(args, kwargs, result)
            if tensors is not None:
                meter.log.append((name, tensors))
            return result

        patch(store, name, wrapper)

    wrap_state("create_run", lambda a, k, r: a[2] if r else None)
    wrap_state("snapshot", lambda a, k, r: r[2])
    wrap_state("read_at", lambda a, k, r: r)
    wrap_state("commit", lambda a, k, r: a[3] if r == "OK" else None)
    try:
        yield meter
    finally:
        for owner, name, original, had_own in reversed(originals):
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def handoff_bytes(log: list[tuple[str, dict[str, np.ndarray]]]) -> dict[str, int]:
    """Bytes the hand-offs moved, and what they strictly needed.

    A hand-off is a write of state (the launch's initial parameters, or an invocation's commit) and
    the reads of the next invocation. Strictly needed: each tensor that the next invocation reads
    and that changed since it was last stored, written once and read once (encoded size, header
    included on both sides). Everything else moved is overhead: dead or unchanged tensors written,
    tensors read twice.
    """
    segments: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
    for kind, tensors in log:
        if kind in ("create_run", "commit"):
            segments.append((tensors, {}))
        elif segments:
            segments[-1][1].update(tensors)
    moved = sum(len(encode(v)) for _, tensors in log for v in tensors.values())
    needed = 0
    stored: dict[str, np.ndarray] = {}
    for written, read_after in segments:
        for name, value in written.items():
            previous = stored.get(name)
            changed = previous is None or previous.shape != value.shape or not np.array_equal(previous, value)
            if name in read_after and changed:
                needed += 2 * len(encode(value))
            stored[name] = value
    return {"moved": moved, "needed": needed}


SERVER_PIDS: list[int] = []  # redis-server and moto server when the bench started them: their CPU counts too


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and of the local servers: a load-independent measure."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in SERVER_PIDS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return total


# -- the runs --------------------------------------------------------------------------------------
def _network(network: dict[str, Any]) -> tuple[list[int], list[str]]:
    n = len(network["neurons"])
    return (
        [int(network["neurons"][f"layer{i}"]) for i in range(1, n + 1)],
        [str(network["activations"][f"layer{i}"]) for i in range(1, n + 1)],
    )


def _predict_accuracy(params: dict[str, np.ndarray], activations: list[str], x: np.ndarray, y: np.ndarray) -> float:
    a = x
    for i, act in enumerate(activations, start=1):
        a = layers.forward(a, params[f"W{i}"], params[f"b{i}"], act, output=i == len(activations))
    pred = (a > 0).astype(np.int64) if activations[-1] == "sigmoid" else np.argmax(a, axis=0).reshape(1, -1)
    return float(np.mean(pred == y.astype(np.int64)))


def run_monolithic(dataset: str, network: dict[str, Any], epochs: int, dtype: str) -> dict[str, Any]:
    neurons, activations = _network(network)
    t, cpu = time.perf_counter(), _cpu_s()
    ds = prepare(load_raw(dataset), "auto", dtype)
    params = initialise([ds.features, *neurons], network.get("init", "scaled_normal"), network.get("seed", 1), dtype)
    t_train = time.perf_counter()
    params, costs = monolithic.train(
        ds.x_train,
        ds.y_train,
        params,
        activations,
        epochs,
        network["learning_rate"],
        network.get("optimizer", "gd"),
        network.get("l2", 0.0),
        network.get("batch_size"),
        network.get("seed", 1),
    )
    train_s = time.perf_counter() - t_train
    test_acc = _predict_accuracy(params, activations, ds.x_test, ds.y_test)
    wall, cpu = time.perf_counter() - t, _cpu_s() - cpu
    return {
        "mode": "monolithic",
        "dtype": dtype,
        "epochs": epochs,
        "wall_s": wall,
        "cpu_s": cpu,
        "train_s": train_s,
        "costs": costs,
        "final_cost": costs[-1],
        "test_accuracy": test_acc,
        "train_accuracy": _predict_accuracy(params, activations, ds.x_train, ds.y_train),
    }


def run_chain(
    stack: Any, dataset: str, network: dict[str, Any], epochs: int, dtype: str, chain: str, **request: Any
) -> dict[str, Any]:
    from trainer.local import runner

    payload = {"dataset": dataset, **network, "epochs": epochs, "dtype": dtype, "chain": chain, **request}
    stack.invoker.queue.clear()
    sent_before = stack.invoker.sent
    with metered(stack.services.tensor_store) as meter:
        t, cpu = time.perf_counter(), _cpu_s()
        launched = runner.launch(stack, payload)
        results: list[dict[str, Any]] = []
        dead = runner.drain(stack, on_result=results.append)
        wall, cpu = time.perf_counter() - t, _cpu_s() - cpu
    if dead:
        raise RuntimeError(f"the {chain} chain failed: {dead}")
    final = results[-1]
    if final.get("status") != "SUCCEEDED":
        raise RuntimeError(f"the {chain} chain ended {final.get('status')}")
    run_id = launched["run_id"]
    history = sorted(stack.services.run_store.epochs(run_id), key=lambda e: e["epoch"])
    invocations = stack.invoker.sent - sent_before  # the launch's start event + every hand-off
    bytes_ = handoff_bytes(meter.log)
    metrics = final["metrics"]
    return {
        "mode": chain,
        "dtype": dtype,
        "epochs": epochs,
        "wall_s": wall,
        "cpu_s": cpu,
        "run_id": run_id,
        "costs": [float(e["cost"]) for e in history],
        "final_cost": float(metrics["final_cost"]),
        "test_accuracy": float(metrics["test_accuracy"]),
        "train_accuracy": float(metrics["train_accuracy"]),
        "invocations": invocations,
        "compute_s": meter.compute_s,
        "redis_s": meter.redis_s,
        "round_trips": meter.round_trips,
        "aws_calls": meter.aws_calls,
        "aws_s": meter.aws_s,
        "data_bytes": meter.data_bytes,
        "data_load_s": meter.data_load_s,
        "state_bytes": meter.state_bytes,
        "handoff_overhead_ratio": bytes_["moved"] / max(1, bytes_["needed"]),
        "handoff_bytes": bytes_["moved"],
        "handoff_needed_bytes": bytes_["needed"],
        "epoch_durations_s": [float(e["duration_s"]) for e in history],
    }


def model_lambda(row: dict[str, Any], hop_ms: float, rtt_ms: float, aws_ms: float) -> dict[str, float]:
    warm = (
        row["compute_s"]
        + row["invocations"] * hop_ms / 1000
        + row["redis_s"]
        + row["round_trips"] * rtt_ms / 1000
        + row["aws_calls"] * aws_ms / 1000
    )
    cold = warm + (row["invocations"] - 1) * row["data_load_s"]
    return {"modelled_lambda_s": warm, "modelled_lambda_cold_s": cold}


def _extrapolate(row: dict[str, Any], plan_full: Plan, plan_run: Plan) -> dict[str, Any]:
    """A per_step row run for fewer epochs, scaled to the full benchmark: every per-epoch quantity
    linearly, the invocations exactly from the plan (one per step)."""
    factor = plan_full.epochs / plan_run.epochs
    out = dict(row)
    for key in ("wall_s", "cpu_s", "compute_s", "redis_s", "aws_s"):
        out[key] = row[key] * factor
    for key in ("round_trips", "aws_calls", "state_bytes", "handoff_bytes", "handoff_needed_bytes"):
        out[key] = round(row[key] * factor)
    out["invocations"] = plan_full.total_steps
    out["extrapolated_from_epochs"] = plan_run.epochs
    out["epochs"] = plan_full.epochs
    return out


# -- datasets -------------------------------------------------------------------------------------
def synthetic_cat_like(path: Path, seed: int = 7) -> Path:
    """Stand-in for the cat set where it is absent: the same shapes (209 + 50 images of 64x64x3, uint8)
    with labels from a fixed random linear teacher, so the network has something to learn."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(259, 64, 64, 3), dtype=np.uint8)
    teacher = rng.normal(size=64 * 64 * 3)
    score = (x.reshape(259, -1).astype(np.float64) / 255 - 0.5) @ teacher
    y = (score > np.median(score)).astype(np.int64)
    np.savez(path, train_set_x=x[:209], train_set_y=y[:209], test_set_x=x[209:], test_set_y=y[209:])
    return path


def tiled(source: str, factor: int, path: Path) -> Path:
    """`source` with `factor` times the training examples (copies), the same test set."""
    raw = load_raw(source)
    arrays = {k: np.asarray(v) for k, v in raw.items()}
    arrays["train_set_x"] = np.concatenate([arrays["train_set_x"]] * factor)
    arrays["train_set_y"] = np.concatenate([np.asarray(arrays["train_set_y"]).reshape(-1)] * factor)
    np.savez(path, **arrays)
    return path


# -- the bench --------------------------------------------------------------------------------------
def _blas_threads() -> str:
    return os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "library default"


def run(opts: argparse.Namespace, stack: Any, workdir: Path, say: Any = print) -> dict[str, Any]:
    if opts.dataset:
        dataset, dataset_note = opts.dataset, f"dataset {opts.dataset}"
    elif CAT_H5.exists():
        dataset, dataset_note = str(CAT_H5), f"the cat/non-cat benchmark ({CAT_H5})"
    else:
        dataset = str(synthetic_cat_like(workdir / "synthetic-cat-like.npz"))
        dataset_note = (
            f"{CAT_H5} is absent: a synthetic stand-in with the cat set's shapes "
            "(209 + 50 examples of 12288 uint8 features, labels from a random linear teacher)"
        )
    network = dict(CAT_NETWORK)
    epochs, ps_epochs = opts.epochs, min(opts.per_step_epochs, opts.epochs)
    n_layers = len(network["neurons"])
    say(f"bench: {dataset_note}; {epochs} epochs; BLAS threads {_blas_threads()}")

    rows: list[dict[str, Any]] = []
    for dtype in opts.dtypes:
        monos, fuseds = [], []
        for rep in range(opts.repeats):  # interleaved, so a busy machine hurts both alike; the best of each
            monos.append(run_monolithic(dataset, network, epochs, dtype))
            say(f"  monolithic {dtype} #{rep + 1}: {monos[-1]['wall_s']:.2f} s")
            fuseds.append(run_chain(stack, dataset, network, epochs, dtype, "fused"))
            say(f"  fused {dtype} #{rep + 1}: {fuseds[-1]['wall_s']:.2f} s, {fuseds[-1]['invocations']} invocations")
        mono = min(monos, key=lambda r: r["wall_s"])
        fused = min(fuseds, key=lambda r: r["wall_s"])
        per_step = run_chain(stack, dataset, network, ps_epochs, dtype, "per_step")
        say(f"  per_step {dtype}: {per_step['wall_s']:.2f} s for {ps_epochs} epochs")
        per_step["cost_delta_vs_monolithic"] = abs(per_step["final_cost"] - mono["costs"][ps_epochs - 1])
        per_step["final_cost_at_epochs"] = ps_epochs
        if ps_epochs < epochs:
            per_step = _extrapolate(per_step, Plan(n_layers, epochs, 1), Plan(n_layers, ps_epochs, 1))
        fused["cost_delta_vs_monolithic"] = abs(fused["final_cost"] - mono["final_cost"])
        fused["final_cost_at_epochs"] = epochs
        mono["cost_delta_vs_monolithic"] = 0.0
        mono["final_cost_at_epochs"] = epochs
        mono["wall_s_repeats"] = [r["wall_s"] for r in monos]
        fused["wall_s_repeats"] = [r["wall_s"] for r in fuseds]
        mono["cpu_s"] = min(r["cpu_s"] for r in monos)
        fused["cpu_s"] = min(r["cpu_s"] for r in fuseds)
        for row in (mono, per_step, fused):
            row["ratio_to_monolithic"] = row["wall_s"] / mono["wall_s"]
            row["cpu_ratio_to_monolithic"] = row["cpu_s"] / mono["cpu_s"]
            if row["mode"] != "monolithic":
                row.update(model_lambda(row, opts.hop_ms, opts.redis_rtt_ms, opts.aws_call_ms))
                row["round_trips_per_epoch"] = row["round_trips"] / row["epochs"]
                row["redis_bytes_per_epoch"] = row["state_bytes"] / row["epochs"]
                row["handoff_bytes_per_epoch"] = row["handoff_bytes"] / row["epochs"]
                row["handoff_needed_bytes_per_epoch"] = row["handoff_needed_bytes"] / row["epochs"]
            else:
                row.update(invocations=0, round_trips_per_epoch=0.0, redis_bytes_per_epoch=0.0)
            rows.append(row)

    f64 = {r["mode"]: r for r in rows if r["dtype"] == "float64"}
    f32 = {r["mode"]: r for r in rows if r["dtype"] == "float32"}
    float32_note = None
    if f64 and f32:
        float32_note = {
            "final_cost_float64": f64["fused"]["final_cost"],
            "final_cost_float32": f32["fused"]["final_cost"],
            "test_accuracy_float64": f64["fused"]["test_accuracy"],
            "test_accuracy_float32": f32["fused"]["test_accuracy"],
            "train_accuracy_float64": f64["fused"]["train_accuracy"],
            "train_accuracy_float32": f32["fused"]["train_accuracy"],
            "max_cost_curve_gap": float(
                np.max(np.abs(np.array(f64["fused"]["costs"]) - np.array(f32["fused"]["costs"])))
            ),
            "fused_speedup": f64["fused"]["wall_s"] / f32["fused"]["wall_s"],
            "handoff_bytes_ratio": f32["fused"]["handoff_bytes"] / max(1, f64["fused"]["handoff_bytes"]),
        }

    scaling = []
    for factor in opts.scale_factors:
        path = dataset if factor == 1 else str(tiled(dataset, factor, workdir / f"tiled-{factor}x.npz"))
        mono = run_monolithic(path, network, opts.scale_epochs, "float64")
        fused = run_chain(stack, path, network, opts.scale_epochs, "float64", "fused")
        steady = float(np.median(fused["epoch_durations_s"])) if fused["epoch_durations_s"] else float("nan")
        scaling.append(
            {
                "factor": factor,
                "examples": int(load_raw(path)["train_set_x"].shape[0]),
                "epochs": opts.scale_epochs,
                "monolithic_s_per_epoch": mono["train_s"] / opts.scale_epochs,
                "fused_s_per_epoch": steady,
                "fused_whole_run_s_per_epoch": fused["wall_s"] / opts.scale_epochs,
                "fused_one_time_data_s": fused["data_load_s"],
                "fused_wall_s": fused["wall_s"],
                "monolithic_wall_s": mono["wall_s"],
                "cost_delta": abs(fused["final_cost"] - mono["final_cost"]),
            }
        )
        say(f"  scaling {factor}x: monolithic {mono['wall_s']:.2f} s, fused {fused['wall_s']:.2f} s")

    for row in rows:  # the curves are long; keep their ends
        row["costs_tail"] = row.pop("costs")[-3:]
        row.pop("epoch_durations_s", None)
    fused64 = f64.get("fused", {})
    targets = {
        "fused_ratio_le_1.10": fused64.get("ratio_to_monolithic", float("inf")) <= 1.10,
        "fused_identical_cost": fused64.get("cost_delta_vs_monolithic", 1.0) <= 1e-9,
        "modelled_fused_lt_600s": fused64.get("modelled_lambda_s", float("inf")) < 600,
        "fused_handoff_bytes_le_1.1x_needed": fused64.get("handoff_overhead_ratio", float("inf")) <= 1.1,
    }
    return {
        "dataset": dataset_note,
        "epochs": epochs,
        "per_step_epochs": ps_epochs,
        "per_step_note": (
            f"per_step ran {ps_epochs} epochs; its times, round trips, bytes and AWS calls are "
            f"scaled x{epochs / ps_epochs:g} to {epochs} epochs and its invocations come from "
            f"the plan; its final cost and accuracy are at epoch {ps_epochs} and are compared "
            f"with the monolithic cost at that epoch"
        )
        if ps_epochs < epochs
        else None,
        "wall_time_includes": __doc__.split("What a row's wall time includes: ", 1)[1]
        .split("\n\n")[0]
        .replace("\n", " "),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "blas_threads": _blas_threads(),
            "load_average": os.getloadavg(),
        },
        "model": {
            "hop_ms": opts.hop_ms,
            "redis_rtt_ms": opts.redis_rtt_ms,
            "aws_call_ms": opts.aws_call_ms,
            "assumptions": MODEL_ASSUMPTIONS,
        },
        "rows": rows,
        "float32": float32_note,
        "scaling": scaling,
        "targets": targets,
    }


# -- output ---------------------------------------------------------------------------------------
def _secs(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f}"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"LNN benchmark: {result['dataset']}, {result['epochs']} epochs, "
        f"BLAS threads {result['machine']['blas_threads']}",
        "",
    ]
    head = (
        f"{'chain':<11}{'dtype':<8}{'wall s':>9}{'ratio':>7}{'cpu r.':>7}{'invoc.':>8}{'RT/ep':>7}{'MB/ep':>8}"
        f"{'final cost':>20}{'|Δ| mono':>10}{'test acc':>9}{'Lambda s':>10}{'cold s':>9}"
    )
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        mark = "*" if r.get("extrapolated_from_epochs") else " "
        lam = f"{r['modelled_lambda_s']:.1f}" if "modelled_lambda_s" in r else "-"
        cold = f"{r['modelled_lambda_cold_s']:.1f}" if "modelled_lambda_cold_s" in r else "-"
        lines.append(
            f"{r['mode'] + mark:<11}{r['dtype']:<8}{r['wall_s']:>9.2f}{r['ratio_to_monolithic']:>7.3f}"
            f"{r['cpu_ratio_to_monolithic']:>7.3f}"
            f"{r['invocations']:>8}{r['round_trips_per_epoch']:>7.2f}{_mb(r['redis_bytes_per_epoch']):>8}"
            f"{r['final_cost']:>20.15f}{r['cost_delta_vs_monolithic']:>10.1e}{r['test_accuracy']:>9.3f}"
            f"{lam:>10}{cold:>9}"
        )
    if result.get("per_step_note"):
        lines.append(f"* {result['per_step_note']}")
    lines.append(
        "ratio = wall time / the monolithic wall time (same dtype; best of the repeats); cpu r. = CPU seconds "
        "(this process with all its threads, plus redis-server and moto server) / the monolithic CPU seconds, "
        "which other load on the machine disturbs much less; RT/ep, MB/ep = Redis round trips and tensor bytes "
        "per epoch (hand-offs and the dataset); Lambda s = modelled time on Lambda (below)"
    )
    for r in result["rows"]:
        if r["mode"] == "fused":
            outside = r["wall_s"] - r["compute_s"]
            mono = next(m for m in result["rows"] if m["mode"] == "monolithic" and m["dtype"] == r["dtype"])
            lines.append(
                f"fused {r['dtype']}: {r['compute_s']:.2f} s in the steps, {outside:.2f} s outside them (launch, "
                f"data load, commits, hand-offs, DynamoDB/S3/SNS, finish) = {outside / mono['wall_s']:.1%} of the "
                f"monolithic time; walls of the repeats: fused {_secs(r['wall_s_repeats'])}, "
                f"monolithic {_secs(mono['wall_s_repeats'])}"
            )
    lines += [
        "",
        "Redis traffic of the hand-offs (state written by one invocation and read by the next; the "
        "dataset, written once at launch and read once per warm environment, is not included):",
    ]
    for r in result["rows"]:
        if r["mode"] == "fused":
            lines.append(
                f"  fused {r['dtype']}: {_mb(r['handoff_bytes_per_epoch'])} MB/epoch moved, "
                f"{_mb(r['handoff_needed_bytes_per_epoch'])} MB/epoch strictly needed "
                f"(ratio {r['handoff_overhead_ratio']:.4f}); dataset once: {_mb(r['data_bytes'])} MB"
            )
    steps = next(r["invocations"] for r in result["rows"] if r["mode"] == "per_step")  # one per step of the plan
    lines += ["", f"Redis per step ({steps} steps in the run; the dataset load included):"]
    for r in result["rows"]:
        if r["mode"] != "monolithic":
            lines.append(
                f"  {r['mode']:<8} {r['dtype']}: {r['round_trips'] / steps:.4f} round trips/step, "
                f"{r['state_bytes'] / steps / 1e3:.3f} kB/step"
            )
    m = result["model"]
    lines += [
        "",
        f"Modelled Lambda time (hop {m['hop_ms']:g} ms, Redis RTT {m['redis_rtt_ms']:g} ms, "
        f"AWS call {m['aws_call_ms']:g} ms):",
    ]
    lines += [f"  - {a}" for a in m["assumptions"]]
    for r in result["rows"]:
        if "modelled_lambda_s" in r:
            lines.append(
                f"  {r['mode']:<9}{r['dtype']:<8} compute {r['compute_s']:.1f} s + hops {r['invocations']} x "
                f"{m['hop_ms']:g} ms + Redis {r['redis_s']:.1f} s + RTT {r['round_trips']} x {m['redis_rtt_ms']:g} ms"
                f" + AWS {r['aws_calls']} x {m['aws_call_ms']:g} ms = {r['modelled_lambda_s']:.1f} s "
                f"({r['modelled_lambda_s'] / 60:.1f} min)"
            )
    f32 = result.get("float32")
    if f32:
        lines += [
            "",
            (
                f"float32 (fused): final cost {f32['final_cost_float32']:.9f} vs "
                f"{f32['final_cost_float64']:.9f} (float64), largest gap along the cost curve "
                f"{f32['max_cost_curve_gap']:.2e}; test accuracy "
                f"{f32['test_accuracy_float32']:.3f} vs {f32['test_accuracy_float64']:.3f}, train accuracy "
                f"{f32['train_accuracy_float32']:.3f} vs {f32['train_accuracy_float64']:.3f}; "
                f"{f32['fused_speedup']:.2f}x the speed, {f32['handoff_bytes_ratio']:.2f}x the hand-off "
                "bytes"
            ),
        ]
    if result["scaling"]:
        lines += [
            "",
            f"Scaling (float64, the training set tiled, {result['scaling'][0]['epochs']} epochs each; "
            "s/epoch of training: monolithic = its training loop / epochs, fused = median epoch time inside "
            "the chain; 'run s/ep' = the fused run's whole wall time / epochs, one-time costs included; "
            "'data s' = the one-time load of the data from Redis):",
            f"  {'factor':>6}{'examples':>10}{'mono s/ep':>11}{'fused s/ep':>12}{'fused/mono':>12}"
            f"{'run s/ep':>10}{'data s':>8}",
        ]
        for s in result["scaling"]:
            lines.append(
                f"  {s['factor']:>5}x{s['examples']:>10}{s['monolithic_s_per_epoch']:>11.4f}"
                f"{s['fused_s_per_epoch']:>12.4f}"
                f"{s['fused_s_per_epoch'] / s['monolithic_s_per_epoch']:>12.3f}"
                f"{s['fused_whole_run_s_per_epoch']:>10.4f}{s['fused_one_time_data_s']:>8.2f}"
            )
    lines += [
        "",
        "Targets: " + ", ".join(f"{k} {'met' if v else 'NOT MET'}" for k, v in result["targets"].items()),
        f"Wall time includes: {result['wall_time_includes']}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("bench-results.json"))
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument(
        "--per-step-epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="per_step runs this many epochs (fewer: the rest is extrapolated, and the table says so)",
    )
    p.add_argument("--hop-ms", type=float, default=50.0, help="modelled latency of one asynchronous hand-off")
    p.add_argument("--redis-rtt-ms", type=float, default=0.5, help="modelled network RTT to ElastiCache")
    p.add_argument("--aws-call-ms", type=float, default=10.0, help="modelled latency of a DynamoDB/S3/SNS call")
    p.add_argument("--repeats", type=int, default=3, help="monolithic and fused runs per dtype (best is kept)")
    p.add_argument("--scale-epochs", type=int, default=20)
    p.add_argument("--scale-factors", type=lambda s: [int(f) for f in s.split(",")], default=[1, 4, 16])
    p.add_argument("--dtypes", type=lambda s: s.split(","), default=["float64", "float32"])
    p.add_argument("--dataset", default=None, help="default: the cat set, or a synthetic stand-in if absent")
    p.add_argument(
        "--threads", default="1", help="BLAS threads (set before numpy loads; 0 = the library's default); default 1"
    )
    p.add_argument("--quick", action="store_true", help="a few epochs of everything (a smoke run)")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.epochs = min(opts.epochs, 20)
        opts.per_step_epochs = min(opts.per_step_epochs, 4)
        opts.repeats = 1
        opts.scale_epochs = min(opts.scale_epochs, 3)
        opts.scale_factors = [1, 2]
    return opts


def main(argv: list[str] | None = None, stack: Any = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lnn-bench-") as tmp:
        if stack is None:
            from trainer.local import runner

            with runner.local_stack() as (stack, redis_server, moto):
                SERVER_PIDS[:] = [p.pid for p in (redis_server.process, moto.process) if p is not None]
                result = run(opts, stack, Path(tmp))
        else:
            result = run(opts, stack, Path(tmp))
    text = render(result)
    result["table"] = text
    opts.output.write_text(json.dumps(result, indent=1, default=float))
    print(text)
    print(f"\nwrote {opts.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

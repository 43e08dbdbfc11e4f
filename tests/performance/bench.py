"""The bench itself: its sections, what each measures and in which order, and the command line
(`python -m tests.performance`, see __main__.py). Sections (--sections): cat (monolithic / per_step /
fused, float64 and float32, the Redis traffic, modelled Lambda time and cost), breakdown (where a cat
epoch goes, LNN against PyTorch, and how far each way of calling BLAS gets: breakdown.py), scaling (the cat set
tiled; the data path and peak memory of a trainer execution environment on the MNIST-shaped set and
16x cat), versus (the fused chain against PyTorch, at each of --thread-counts: the other counts run in
a fresh process, since BLAS threads are fixed when numpy loads), coldstart (importing both handlers in
the image's environment), sweep (24 random trials with ASHA against the same trials to the end, and
modelled on Lambda with every trial at once: sweeps.py), parallel (data-parallel runs with N workers
measured on the local cloud, a worker SIGKILLed, and modelled on Lambda up to 64 workers: parallel.py).

Every chain run except the sweep's goes through a local cloud the bench starts (tests/performance/
cloud.py): LaunchLambda invoked through the Lambda API, the TrainerLambda in execution environments
that run the image's Python (3.12, requirements.lock), handing off through the production invoker,
the meter inside the environments. The monolithic trainer and the report run in this process (the
project's virtual environment). The environments get this process's BLAS thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.performance import breakdown, cloud, measuring, parallel, parallel_model, report, runs, sweeps, workloads
from trainer.data.loader import load_raw
from trainer.statemachine import Plan

SECTIONS = ("cat", "breakdown", "scaling", "versus", "coldstart", "sweep", "parallel")


def _extrapolate(row: dict[str, Any], plan_full: Plan, plan_run: Plan) -> dict[str, Any]:
    """A per_step row run for fewer epochs, scaled to the full benchmark: every per-epoch quantity
    linearly, the invocations exactly from the plan (one per step)."""
    factor = plan_full.epochs / plan_run.epochs
    out = dict(row)
    for key in ("wall_s", "cpu_s", "compute_s", "redis_s", "aws_s"):
        out[key] = row[key] * factor
    for key in ("round_trips", "aws_calls", "state_bytes", "handoff_bytes", "handoff_needed_bytes"):
        out[key] = round(row[key] * factor)
    out["aws_calls_by_operation"] = {k: round(v * factor) for k, v in row["aws_calls_by_operation"].items()}
    out["invocations"] = plan_full.total_steps
    out["extrapolated_from_epochs"] = plan_run.epochs
    out["epochs"] = plan_full.epochs
    return out


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


def cat_section(opts: argparse.Namespace, stack: Any, cat: workloads.Workload, say: Any) -> dict[str, Any]:
    network, epochs = cat.network, opts.epochs
    ps_epochs = min(opts.per_step_epochs, epochs)
    n_layers = len(network["neurons"])
    rows: list[dict[str, Any]] = []
    for dtype in opts.dtypes:
        monos, fuseds = [], []
        for rep in range(opts.repeats):  # interleaved, so a busy machine hurts both alike; the best of each
            monos.append(runs.run_monolithic(cat.dataset, network, epochs, dtype))
            say(f"  monolithic {dtype} #{rep + 1}: {monos[-1]['wall_s']:.2f} s")
            fuseds.append(runs.run_chain(stack, cat.dataset, network, epochs, dtype, "fused"))
            say(f"  fused {dtype} #{rep + 1}: {fuseds[-1]['wall_s']:.2f} s, {fuseds[-1]['invocations']} invocations")
        mono = min(monos, key=lambda r: r["wall_s"])
        fused = min(fuseds, key=lambda r: r["wall_s"])
        per_step = runs.run_chain(stack, cat.dataset, network, ps_epochs, dtype, "per_step")
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
                row["cost_per_run"] = runs.cost_per_run(row, row["launch_s"])
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
    for row in rows:  # the curves are long; keep their ends
        row["costs_tail"] = row.pop("costs")[-3:]
        row.pop("epoch_durations_s", None)
    note = (
        f"per_step ran {ps_epochs} epochs; its times, round trips, bytes and AWS calls are "
        f"scaled x{epochs / ps_epochs:g} to {epochs} epochs and its invocations come from "
        f"the plan; its final cost and accuracy are at epoch {ps_epochs} and are compared "
        f"with the monolithic cost at that epoch"
    )
    return {
        "epochs": epochs,
        "per_step_epochs": ps_epochs,
        "per_step_note": note if ps_epochs < epochs else None,
        "rows": rows,
        "float32": float32_note,
    }


def scaling_section(
    opts: argparse.Namespace, stack: Any, cat: workloads.Workload, mnist: workloads.Workload, workdir: Path, say: Any
) -> dict[str, Any]:
    network = cat.network
    table = []
    for factor in opts.scale_factors:
        path = (
            cat.dataset if factor == 1 else str(workloads.tiled(cat.dataset, factor, workdir / f"tiled-{factor}x.npz"))
        )
        mono = runs.run_monolithic(path, network, opts.scale_epochs, "float64")
        fused = runs.run_chain(stack, path, network, opts.scale_epochs, "float64", "fused")
        steady = float(np.median(fused["epoch_durations_s"])) if fused["epoch_durations_s"] else float("nan")
        table.append(
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

    big = max(opts.scale_factors)
    data_path = []
    cases = [
        (f"cat x{big}", str(workdir / f"tiled-{big}x.npz") if big > 1 else cat.dataset, network, opts.scale_epochs)
    ]
    cases.append((mnist.name, mnist.dataset, mnist.network, mnist.epochs))
    for name, dataset, net, epochs in cases:
        env_row = runs.run_chain_in_own_environment(stack, dataset, net, epochs, "float64")
        raw = load_raw(dataset)
        features = int(np.prod(np.asarray(raw["train_set_x"]).shape[1:]))
        sizes = runs.model_bytes(
            features, net, env_row["examples"], int(np.asarray(raw["test_set_x"]).shape[0]), "float64"
        )
        held = sizes["data"] + sizes["params"] + sizes["optimizer_state"]
        env_row.update(
            name=name,
            epochs=epochs,
            dtype="float64",
            held_bytes=held,
            **{f"{k}_bytes": v for k, v in sizes.items()},
            one_time_fraction=(env_row["launch_s"] + env_row["first_load_s"]) / env_row["wall_s"],
            memory_ratio=(env_row["peak_rss"] - env_row["baseline_rss"]) / held,
        )
        data_path.append(env_row)
        say(
            f"  data path {name}: launch {env_row['launch_s']:.2f} s + first load {env_row['first_load_s']:.2f} s "
            f"of {env_row['wall_s']:.2f} s; peak RSS {env_row['peak_rss'] / 2**20:.0f} MiB"
        )
    return {"table": table, "data_path": data_path}


def versus_section(
    opts: argparse.Namespace, stack: Any, cases: list[workloads.Workload], workdir: Path, say: Any
) -> list[dict[str, Any]]:
    """The fused chain against PyTorch at this process's thread count; MNIST also against the
    monolithic trainer (bit-identity)."""
    threads = measuring.threads_in_use()
    rows = []
    for wl in cases:
        for dtype in opts.dtypes:
            fuseds, torches = [], []
            for _ in range(opts.versus_repeats):
                fuseds.append(runs.run_chain(stack, wl.dataset, wl.network, wl.epochs, dtype, "fused"))
                if runs.torch_python() is not None:
                    torches.append(runs.run_torch(wl.dataset, wl.network, wl.epochs, dtype, threads, workdir))
            fused = min(fuseds, key=lambda r: r["wall_s"])
            row: dict[str, Any] = {
                "workload": wl.name,
                "dtype": dtype,
                "threads": threads,
                "epochs": wl.epochs,
                "fused_wall_s": fused["wall_s"],
                "fused_compute_s": fused["compute_s"],
                "fused_launch_s": fused["launch_s"],
                "fused_data_load_s": fused["data_load_s"],
                "fused_servers_cpu_s": fused["servers_cpu_s"],
                "fused_invocations": fused["invocations"],
                "fused_test_accuracy": fused["test_accuracy"],
                "fused_final_cost": fused["final_cost"],
            }
            if wl.name == "mnist":
                mono = runs.run_monolithic(wl.dataset, wl.network, wl.epochs, dtype)
                row["monolithic_wall_s"] = mono["wall_s"]
                row["cost_delta_vs_monolithic"] = max(
                    abs(a - b) for a, b in zip(fused["costs"], mono["costs"], strict=True)
                )
            if torches:
                torch = min(torches, key=lambda r: r["wall_s"])
                row.update(
                    torch_wall_s=torch["wall_s"],
                    torch_train_s=torch["train_s"],
                    torch_test_accuracy=torch["test_accuracy"],
                    torch_final_cost=torch["final_cost"],
                    torch_version=torch["torch"],
                    ratio_to_torch=fused["wall_s"] / torch["wall_s"],
                )
            rows.append(row)
            say(
                f"  versus {wl.name} {dtype} threads {threads}: fused {fused['wall_s']:.2f} s"
                + (f", PyTorch {row['torch_wall_s']:.2f} s" if torches else ", PyTorch absent")
            )
    return rows


def run(opts: argparse.Namespace, stack: cloud.BenchCloud, workdir: Path, say: Any = print) -> dict[str, Any]:
    cat = workloads.cat(workdir, opts.epochs)
    mnist = workloads.mnist(workdir, opts.mnist_epochs, opts.mnist_train, opts.mnist_test)
    say(f"bench: {cat.note}; {mnist.note}; BLAS threads {measuring.blas_threads()}")
    result: dict[str, Any] = {
        "dataset": cat.note,
        "mnist_dataset": mnist.note,
        "wall_time_includes": runs.WALL_TIME_INCLUDES,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "blas_threads": measuring.blas_threads(),
            "load_average_before": os.getloadavg(),
            "functions_python": stack.python,
        },
        "environment_start": stack.startup,
        "model": {
            "hop_ms": opts.hop_ms,
            "redis_rtt_ms": opts.redis_rtt_ms,
            "aws_call_ms": opts.aws_call_ms,
            "assumptions": report.MODEL_ASSUMPTIONS,
            "prices": runs.PRICES,
            "launch_memory_mb": runs.LAUNCH_MEMORY_MB,
            "trainer_memory_mb": runs.TRAINER_MEMORY_MB,
        },
    }
    if "cat" in opts.sections:
        result["cat"] = cat_section(opts, stack, cat, say)
    if "breakdown" in opts.sections:
        result["breakdown"] = breakdown.section(
            cat.dataset, cat.network, opts.dtypes, opts.breakdown_epochs, measuring.threads_in_use(), workdir
        )
        for row in result["breakdown"]["rows"]:
            lnn, torch = row["lnn"], row.get("torch")
            say(
                f"  breakdown {lnn['dtype']}: LNN {lnn['epoch_ms']:.2f} ms/epoch"
                + (f", PyTorch {torch['epoch_ms']:.2f} ms/epoch" if torch else "")
            )
    if "scaling" in opts.sections:
        result["scaling"] = scaling_section(opts, stack, cat, mnist, workdir, say)
    if "versus" in opts.sections:
        result["versus"] = versus_section(opts, stack, [cat, mnist], workdir, say)
        for threads in opts.thread_counts:
            if threads != measuring.threads_in_use():
                result["versus"] += _versus_in_fresh_process(opts, threads, workdir, say)
    if "coldstart" in opts.sections:
        result["cold_start"] = runs.cold_start()
        say(f"  cold start: {result['cold_start']['total_s']:.3f} s")
    if "sweep" in opts.sections:
        # In this process, on the cloud's stack: the sweeps.py docstring says why.
        result["sweep"] = sweeps.sweep_section(stack, workdir, say, opts.sweep_epochs, opts.hop_ms)
        say("\n".join(sweeps.render(result["sweep"])))
    if "parallel" in opts.sections:
        assumptions = parallel_model.Assumptions(
            function_mbps=opts.function_mbps,
            node_gbps=opts.node_gbps,
            redis_rtt_ms=opts.redis_rtt_ms,
            hop_ms=opts.hop_ms,
            gb_s_price=runs.PRICES["lambda_gb_s"],
            request_price=runs.PRICES["lambda_request"],
        )
        result["parallel"] = parallel.section(
            stack,
            workdir,
            say,
            workloads.mnist(workdir, opts.parallel_epochs, opts.mnist_train, opts.mnist_test),
            opts.parallel_epochs,
            tuple(opts.parallel_workers),
            opts.large_factor,
            opts.large_epochs,
            assumptions,
        )
    result["machine"]["load_average_after"] = os.getloadavg()
    result["targets"] = report.targets(result)
    return result


def _versus_in_fresh_process(opts: argparse.Namespace, threads: int, workdir: Path, say: Any) -> list[dict]:
    out = workdir / f"versus-{threads}.json"
    argv = [sys.executable, "-m", "tests.performance", "--sections", "versus", "--threads", str(threads)]
    argv += ["--thread-counts", str(threads), "--output", str(out), "--dtypes", ",".join(opts.dtypes)]
    argv += ["--epochs", str(opts.epochs), "--mnist-epochs", str(opts.mnist_epochs)]
    argv += ["--mnist-train", str(opts.mnist_train), "--mnist-test", str(opts.mnist_test)]
    argv += ["--versus-repeats", str(opts.versus_repeats)]
    if opts.dataset:
        argv += ["--dataset", opts.dataset]
    say(f"  versus at {threads} threads: a fresh process")
    subprocess.run(argv, check=True, cwd=runs.REPO_ROOT, timeout=7200, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["versus"]


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.performance", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("bench-results.json"))
    p.add_argument("--sections", type=lambda s: s.split(","), default=list(SECTIONS))
    p.add_argument("--epochs", type=int, default=workloads.CAT_EPOCHS, help="epochs of the cat benchmark")
    p.add_argument(
        "--per-step-epochs",
        type=int,
        default=250,
        help="per_step runs this many epochs (fewer than --epochs: the rest is extrapolated, and the table "
        "says so; 2500 take about 8 minutes per dtype on an idle core)",
    )
    p.add_argument("--mnist-epochs", type=int, default=workloads.MNIST_EPOCHS)
    p.add_argument("--mnist-train", type=int, default=workloads.MNIST_SHAPE["train"])
    p.add_argument("--mnist-test", type=int, default=workloads.MNIST_SHAPE["test"])
    p.add_argument("--hop-ms", type=float, default=50.0, help="modelled latency of one asynchronous hand-off")
    p.add_argument("--redis-rtt-ms", type=float, default=0.5, help="modelled network RTT to ElastiCache")
    p.add_argument("--aws-call-ms", type=float, default=10.0, help="modelled latency of a DynamoDB/S3/SNS call")
    p.add_argument("--repeats", type=int, default=2, help="monolithic and fused cat runs per dtype (best is kept)")
    p.add_argument("--versus-repeats", type=int, default=1, help="fused and PyTorch runs per case (best is kept)")
    p.add_argument("--breakdown-epochs", type=int, default=300, help="cat epochs timed for the per-epoch breakdown")
    p.add_argument("--scale-epochs", type=int, default=20)
    p.add_argument("--scale-factors", type=_int_list, default=[1, 4, 16])
    p.add_argument("--dtypes", type=lambda s: s.split(","), default=["float64", "float32"])
    p.add_argument("--dataset", default=None, help="the cat benchmark's file (default: beside the clone)")
    p.add_argument("--threads", default="1", help="BLAS threads of this process (set before numpy loads)")
    p.add_argument("--thread-counts", type=_int_list, default=[1, 2], help="thread counts of the versus section")
    p.add_argument("--sweep-epochs", type=int, default=300, help="epochs of each trial of the sweep section")
    p.add_argument("--parallel-epochs", type=int, default=1, help="epochs of the parallel section's MNIST-shaped runs")
    p.add_argument("--parallel-workers", type=_int_list, default=[1, 2, 4], help="N of the parallel section's runs")
    p.add_argument(
        "--large-factor", type=int, default=8, help="the parallel section's large workload: the MNIST-shaped set tiled"
    )
    p.add_argument("--large-epochs", type=int, default=2, help="epochs (full batch) of the large workload")
    p.add_argument("--function-mbps", type=float, default=600.0, help="modelled network bandwidth of one function")
    p.add_argument("--node-gbps", type=float, default=10.0, help="modelled bandwidth of the cache node")
    p.add_argument("--quick", action="store_true", help="a few epochs of everything (a smoke run)")
    opts = p.parse_args(argv)
    unknown = set(opts.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; expected some of {', '.join(SECTIONS)}")
    if opts.quick:
        opts.epochs = min(opts.epochs, 20)
        opts.per_step_epochs = min(opts.per_step_epochs, 4)
        opts.repeats = opts.versus_repeats = 1
        opts.scale_epochs = min(opts.scale_epochs, 3)
        opts.breakdown_epochs = min(opts.breakdown_epochs, 5)
        opts.sweep_epochs = min(opts.sweep_epochs, 24)
        opts.scale_factors = [1, 2]
        opts.mnist_epochs, opts.mnist_train, opts.mnist_test = 1, 2000, 500
        opts.parallel_workers, opts.large_factor, opts.large_epochs = [1, 2], 2, 1
    return opts


def main(argv: list[str] | None = None, stack: Any = None) -> int:
    """`stack`: a running tests.performance.cloud.BenchCloud (the tests share one); else the bench
    starts its own local cloud."""
    opts = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lnn-bench-") as tmp:
        if stack is None:
            with cloud.bench_cloud(measuring.threads_in_use(), Path(tmp) / "cloud.log") as stack:
                result = run(opts, stack, Path(tmp))
        else:
            result = run(opts, stack, Path(tmp))
    result["bench_s"] = time.perf_counter() - started
    text = report.render(result)
    result["table"] = text
    opts.output.write_text(json.dumps(result, indent=1, default=float))
    print(text)
    print(f"\nwrote {opts.output}")
    return 0

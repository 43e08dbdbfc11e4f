"""The bench's report: the targets of issue 12 (and the earlier ones) checked against the figures, and
the table `make bench` prints."""

from __future__ import annotations

from typing import Any

from tests.performance import parallel, sweeps

MODEL_ASSUMPTIONS = [
    "modelled Lambda time = chain compute (the trainer's steps as measured in its local execution "
    "environments, same per-core speed on Lambda, same BLAS threads) + hop latency x invocations + Redis time "
    "measured against the local cloud's ElastiCache (a real redis-server, TLS, loopback) + Redis network RTT "
    "x round trips + AWS API calls (DynamoDB, S3, SNS, and the hand-offs' Lambda Invoke) x a per-call latency",
    "hop latency covers one asynchronous self-invocation: the Invoke API call, the async queue and a warm start",
    "warm reuse: the chain runs one invocation at a time, so the next one lands on the warm execution "
    "environment and finds the training data in its cache; the 'cold' column instead reloads the data from "
    "Redis in every invocation (the measured data-load time per invocation)",
    "no throttling, no retries, no cold start of the container image (reported apart: the local "
    "environments' start-up and the import time)",
]
TARGET_COLD_START_S = 0.5
TARGET_ONE_TIME_FRACTION = 0.10
TARGET_MEMORY_FACTOR = 1.5
TARGET_CAT_LAMBDA_USD = 0.002


def _secs(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f}"


def _render_cat(result: dict[str, Any]) -> list[str]:
    cat = result["cat"]
    lines = [
        f"LNN against its own monolithic numpy trainer: {result['dataset']}, {cat['epochs']} epochs, "
        f"BLAS threads {result['machine']['blas_threads']}",
        "",
    ]
    head = (
        f"{'chain':<11}{'dtype':<8}{'wall s':>9}{'ratio':>7}{'cpu r.':>7}{'invoc.':>8}{'RT/ep':>7}{'MB/ep':>8}"
        f"{'final cost':>20}{'|Δ| mono':>10}{'test acc':>9}{'Lambda s':>10}{'cold s':>9}"
    )
    lines += [head, "-" * len(head)]
    for r in cat["rows"]:
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
    if cat.get("per_step_note"):
        lines.append(f"* {cat['per_step_note']}")
    for r in cat["rows"]:
        if r.get("env_starts"):  # the warm environments were busy when a hand-off came: Lambda starts another
            lines.append(
                f"{r['mode']} {r['dtype']}: {r['env_starts']} execution environment(s) started during the run, "
                f"{r['env_start_s']:.2f} s of start-up inside its wall time"
            )
    lines.append(
        "ratio = wall time / the monolithic wall time (same dtype; best of the repeats); cpu r. = CPU seconds "
        "(the chain: its invocations' in their execution environments, all threads; the monolithic trainer: "
        "this process's) / the monolithic CPU seconds, which other load on the machine disturbs much less; "
        "RT/ep, MB/ep = Redis round trips and tensor bytes per epoch (hand-offs and the dataset); Lambda s = "
        "modelled time on Lambda (below); chains on the local cloud, warm environments (start-up below)"
    )
    for r in cat["rows"]:
        if r["mode"] == "fused":
            outside = r["wall_s"] - r["compute_s"]
            mono = next(m for m in cat["rows"] if m["mode"] == "monolithic" and m["dtype"] == r["dtype"])
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
    for r in cat["rows"]:
        if r["mode"] == "fused":
            lines.append(
                f"  fused {r['dtype']}: {_mb(r['handoff_bytes_per_epoch'])} MB/epoch moved, "
                f"{_mb(r['handoff_needed_bytes_per_epoch'])} MB/epoch strictly needed "
                f"(ratio {r['handoff_overhead_ratio']:.4f}); dataset once: {_mb(r['data_bytes'])} MB"
            )
    steps = next(r["invocations"] for r in cat["rows"] if r["mode"] == "per_step")  # one per step of the plan
    lines += ["", f"Redis per step ({steps} steps in the run; the dataset load included):"]
    for r in cat["rows"]:
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
    for r in cat["rows"]:
        if "modelled_lambda_s" in r:
            lines.append(
                f"  {r['mode']:<9}{r['dtype']:<8} compute {r['compute_s']:.1f} s + hops {r['invocations']} x "
                f"{m['hop_ms']:g} ms + Redis {r['redis_s']:.1f} s + RTT {r['round_trips']} x {m['redis_rtt_ms']:g} ms"
                f" + AWS {r['aws_calls']} x {m['aws_call_ms']:g} ms = {r['modelled_lambda_s']:.1f} s "
                f"({r['modelled_lambda_s'] / 60:.1f} min)"
            )
    f32 = cat.get("float32")
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
    return lines


def _render_cost(result: dict[str, Any]) -> list[str]:
    m = result["model"]
    p = m["prices"]
    lines = [
        "",
        f"Cost per run (us-east-1 on-demand list prices, no free tier: Lambda ${p['lambda_gb_s']:.10f}/GB-s and "
        f"${p['lambda_request'] * 1e6:.2f}/1M requests; DynamoDB ${p['dynamodb_write_request_unit'] * 1e6:.3f}/1M "
        f"write and ${p['dynamodb_read_request_unit'] * 1e6:.3f}/1M read request units; SNS "
        f"${p['sns_publish'] * 1e6:.2f}/1M publishes; S3 ${p['s3_put'] * 1e3:.4f}/1k PUT, "
        f"${p['s3_get'] * 1e3:.4f}/1k GET; LaunchLambda {m['launch_memory_mb']} MB, TrainerLambda "
        f"{m['trainer_memory_mb']} MB (the stack's defaults); GB-s from the modelled Lambda time):",
    ]
    for r in result["cat"]["rows"]:
        c = r.get("cost_per_run")
        if c:
            lines.append(
                f"  {r['mode']:<9}{r['dtype']:<8} {c['gb_s']:8.1f} GB-s = ${c['lambda_compute']:.5f} compute, "
                f"{c['requests']} requests ${c['lambda_requests']:.6f}, DynamoDB ${c['dynamodb']:.6f}, "
                f"SNS ${c['sns']:.7f}, S3 ${c['s3']:.6f}; total ${c['total']:.5f}"
            )
    return lines


def _render_scaling(result: dict[str, Any]) -> list[str]:
    s = result["scaling"]
    lines = [
        "",
        f"Scaling (float64, the cat training set tiled, {s['table'][0]['epochs']} epochs each; s/epoch of "
        "training: monolithic = its training loop / epochs, fused = median epoch time inside the chain; "
        "'run s/ep' = the fused run's whole wall time / epochs, one-time costs included; 'data s' = the "
        "one-time load of the data from Redis):",
        f"  {'factor':>6}{'examples':>10}{'mono s/ep':>11}{'fused s/ep':>12}{'fused/mono':>12}"
        f"{'run s/ep':>10}{'data s':>8}",
    ]
    for t in s["table"]:
        lines.append(
            f"  {t['factor']:>5}x{t['examples']:>10}{t['monolithic_s_per_epoch']:>11.4f}"
            f"{t['fused_s_per_epoch']:>12.4f}{t['fused_s_per_epoch'] / t['monolithic_s_per_epoch']:>12.3f}"
            f"{t['fused_whole_run_s_per_epoch']:>10.4f}{t['fused_one_time_data_s']:>8.2f}"
        )
    lines += [
        "",
        "Data path and memory (fused, float64; on the local cloud, trainer execution environments started for "
        "the run and warmed with a small one; 'held' = training + test data in the run's dtype + parameters + "
        "optimizer state; 'baseline' = the environment's RSS after importing the handler and connecting, "
        "before its first event; 'peak' = its peak RSS; 'envs' = trainer environments the run used):",
        f"  {'run':<10}{'examples':>9}{'epochs':>7}{'wall s':>8}{'launch s':>9}{'load s':>8}{'one-time':>9}"
        f"{'held MiB':>9}{'base MiB':>9}{'peak MiB':>9}{'(peak-base)/held':>17}{'envs':>5}",
    ]
    for d in s["data_path"]:
        lines.append(
            f"  {d['name']:<10}{d['examples']:>9}{d['epochs']:>7}{d['wall_s']:>8.2f}{d['launch_s']:>9.2f}"
            f"{d['first_load_s']:>8.2f}{d['one_time_fraction']:>9.1%}{d['held_bytes'] / 2**20:>9.0f}"
            f"{d['baseline_rss'] / 2**20:>9.0f}{d['peak_rss'] / 2**20:>9.0f}{d['memory_ratio']:>17.2f}"
            f"{d['environments']:>5}"
        )
    return lines


def _render_versus(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "LNN's fused chain against PyTorch CPU (same machine, threads, dtype, data, initial weights and "
        "batches; wall: LNN from the request to the trained model, PyTorch from the data on disk to "
        "the trained model, best of the repeats; LNN on warm environments of the local cloud):",
        f"  {'workload':<8}{'dtype':<9}{'thr':>3}{'fused s':>9}{'steps s':>9}{'PyTorch s':>10}{'ratio':>7}"
        f"{'mono s':>8}{'|Δ| mono':>10}{'acc LNN':>9}{'acc torch':>10}",
    ]
    for v in result["versus"]:
        torch_s = f"{v['torch_wall_s']:.2f}" if "torch_wall_s" in v else "absent"
        ratio = f"{v['ratio_to_torch']:.2f}" if "ratio_to_torch" in v else "-"
        mono = f"{v['monolithic_wall_s']:.2f}" if "monolithic_wall_s" in v else "-"
        delta = f"{v['cost_delta_vs_monolithic']:.1e}" if "cost_delta_vs_monolithic" in v else "-"
        acc_t = f"{v['torch_test_accuracy']:.4f}" if "torch_test_accuracy" in v else "-"
        lines.append(
            f"  {v['workload']:<8}{v['dtype']:<9}{v['threads']:>3}{v['fused_wall_s']:>9.2f}"
            f"{v['fused_compute_s']:>9.2f}{torch_s:>10}{ratio:>7}{mono:>8}{delta:>10}"
            f"{v['fused_test_accuracy']:>9.4f}{acc_t:>10}"
        )
    lines.append(
        "  steps s = the time inside the chain's steps (the math); the rest of 'fused s' is the launch, the "
        "data load, Redis, DynamoDB/S3/SNS and the finish"
    )
    behind = [v for v in result["versus"] if v.get("ratio_to_torch", 0) > 1]
    if behind:
        lines.append("  What binds where the chain is behind PyTorch (the fused run's wall time, split):")
    for v in behind:
        lines.append(f"    {v['workload']} {v['dtype']} {v['threads']} thread(s): {_what_binds(v)}")
    return lines


def _what_binds(v: dict[str, Any]) -> str:
    """The row's wall time split into the math, the one-time costs and the hand-offs, with the CPU
    the local cloud's servers took from the same cores meanwhile."""
    wall, steps, torch = v["fused_wall_s"], v["fused_compute_s"], v["torch_wall_s"]
    once = v["fused_launch_s"] + v.get("fused_data_load_s", 0.0)
    other = wall - steps - once
    servers = v.get("fused_servers_cpu_s")
    share = (
        f"; meanwhile the cloud's server processes (Lambda service + moto, redis-server) used {servers:.2f} "
        f"CPU-s, {servers / (wall * v['threads']):.0%} of {v['threads']} core(s) over the run"
        if servers is not None
        else ""
    )
    return (
        f"steps {steps:.2f} s = {steps / torch:.2f}x PyTorch's whole run ({torch:.2f} s); launch + first data "
        f"load {once:.2f} s; commits, hand-offs and the finish {other:.2f} s (over {v['fused_invocations']} "
        f"invocations){share}"
    )


def _render_breakdown(result: dict[str, Any]) -> list[str]:
    b = result["breakdown"]
    lines = [
        "",
        f"Where a cat epoch goes ({b['threads']} BLAS thread(s), ms per epoch over {b['epochs']} epochs; the two "
        "layer-1 products timed on their own, medians of interleaved rounds; rest = epoch - both):",
        f"  {'':<14}{'dtype':<9}{'epoch':>8}{'W1·X':>8}{'dZ1·Xᵀ':>8}{'rest':>8}",
    ]
    for row in b["rows"]:
        for who, part in (("LNN (numpy)", row["lnn"]), ("PyTorch", row.get("torch"))):
            if part:
                lines.append(
                    f"  {who:<14}{row['lnn']['dtype']:<9}{part['epoch_ms']:>8.2f}{part['forward_ms']:>8.2f}"
                    f"{part['backward_ms']:>8.2f}{part['rest_ms']:>8.2f}"
                )
    for row in b["rows"]:
        lnn = row["lnn"]
        lines.append(f"  options for the two products, {lnn['dtype']} (ms per call):")
        for product, label in (("forward", "W1·X"), ("backward", "dZ1·Xᵀ")):
            for name, ms in lnn["options_ms"][product].items():
                lines.append(f"    {label:<7}{ms:>7.2f}  {name}")
        best = f"{lnn['epoch_ms_with_best_options']:.2f} ms"
        if "epoch_ratio" in row:
            best += f" = {row['epoch_ratio_with_best_options']:.2f}x PyTorch's epoch (now {row['epoch_ratio']:.2f}x)"
        lines.append(f"    an LNN epoch with the fastest option for each product: {best}")
    libs = b["rows"][0]["lnn"]["blas"] if b["rows"] else []
    numpy_blas = "; ".join(
        f"{lib['internal_api']} {lib['version']} ({lib['architecture']}), {lib['num_threads']} thread(s), "
        f"{str(lib['filepath']).rsplit('/', 2)[-2]}"
        for lib in libs
    )
    lines.append(f"  BLAS in LNN's process (threadpoolctl): {numpy_blas or 'threadpoolctl absent'}")
    torch_blas = next((row["torch"]["blas"] for row in b["rows"] if row.get("torch")), None)
    if torch_blas:
        lines.append(f"  BLAS in PyTorch: {'; '.join(torch_blas)}")
    return lines


def _render_environment_start(result: dict[str, Any]) -> list[str]:
    e = result["environment_start"]
    return [
        "",
        f"Execution environment start-up on the local cloud (Python {result['machine']['functions_python']}, "
        f"measured by its Lambda service from the process start to the runtime's first poll for an event; "
        f"{e['count']} environments, the launch's and the trainer's, started by the warm-up run): mean "
        f"{e['mean']:.3f} s, min {e['min']:.3f} s, max {e['max']:.3f} s. No row's wall time includes it.",
    ]


def _render_cold_start(result: dict[str, Any]) -> list[str]:
    c = result["cold_start"]
    packages = ", ".join(f"{name} {s:.3f}" for name, s in list(c["packages"].items())[:10])
    return [
        "",
        f"Cold start: importing both handlers in the image's environment (Python {c['python']}, requirements.lock "
        f"only, the shipped files compiled as in the image) takes {c['total_s']:.3f} s by -X importtime (the "
        f"best of {c['repeats']} imports; the whole process: {c['process_s']:.3f} s); self time by package "
        f"(s): {packages}",
    ]


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: the figure, the bound, met or not."""
    out: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float, bound: float, unit: str = "") -> None:
        out[name] = {"value": value, "bound": bound, "unit": unit, "met": bool(value <= bound)}

    if "cat" in result:
        rows = {(r["mode"], r["dtype"]): r for r in result["cat"]["rows"]}
        fused64 = rows.get(("fused", "float64"))
        if fused64:
            check("cat fused/monolithic wall (float64)", fused64["ratio_to_monolithic"], 1.10, "x")
            check("cat fused |Δ cost| vs monolithic", fused64["cost_delta_vs_monolithic"], 1e-9)
            check("cat fused modelled Lambda time", fused64["modelled_lambda_s"], 600, "s")
            check("cat fused hand-off bytes / strictly needed", fused64["handoff_overhead_ratio"], 1.1, "x")
            check(
                "cat fused Lambda compute per run",
                fused64["cost_per_run"]["lambda_compute"],
                TARGET_CAT_LAMBDA_USD,
                "$",
            )
    for v in result.get("versus", []):
        key = f"{v['workload']} {v['dtype']} {v['threads']} thread(s)"
        if "ratio_to_torch" in v:
            check(f"{key}: fused / PyTorch wall", v["ratio_to_torch"], 1.0, "x")
        if "cost_delta_vs_monolithic" in v:
            check(f"{key}: fused |Δ cost| vs monolithic", v["cost_delta_vs_monolithic"], 1e-9)
    for d in result.get("scaling", {}).get("data_path", []):
        check(f"{d['name']}: launch + first load / wall", d["one_time_fraction"], TARGET_ONE_TIME_FRACTION)
        check(f"{d['name']}: (peak RSS - baseline) / held", d["memory_ratio"], TARGET_MEMORY_FACTOR, "x")
    if "cold_start" in result:
        check(
            "cold start: import both handlers (Python 3.12)", result["cold_start"]["total_s"], TARGET_COLD_START_S, "s"
        )
    if "sweep" in result:
        out.update(sweeps.targets(result["sweep"]))
    if "parallel" in result:
        out.update(parallel.targets(result["parallel"]))
    return out


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    if "cat" in result:
        lines += _render_cat(result)
        lines += _render_cost(result)
    if "breakdown" in result:
        lines += _render_breakdown(result)
    if "versus" in result:
        lines += _render_versus(result)
    if "scaling" in result:
        lines += _render_scaling(result)
    if "environment_start" in result:
        lines += _render_environment_start(result)
    if "cold_start" in result:
        lines += _render_cold_start(result)
    if "sweep" in result:
        lines += ["", *sweeps.render(result["sweep"])]
    if "parallel" in result:
        lines += ["", *parallel.render(result["parallel"])]
    lines += ["", "Targets (figure vs bound):"]
    lines += [parallel.target_line(name, t) for name, t in result["targets"].items()]
    load = result["machine"]
    lines += [
        "",
        f"Machine: {load['cpus']} CPUs, Python {load['python']}, numpy {load['numpy']}; load average "
        f"{load['load_average_before'][0]:.2f} before, {load.get('load_average_after', (float('nan'),))[0]:.2f} after "
        "(other work on the machine slows every row alike; the ratios are interleaved runs)",
        f"Wall time includes: {result['wall_time_includes']}",
    ]
    return "\n".join(lines)

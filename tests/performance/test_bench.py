"""The benchmark (tests/performance) runs end to end (a --quick run on a local cloud, the chains in
execution environments of the image's Python) and produces every row and column with sane values;
its meter counts the Redis traffic the tensor store makes; and the chain it measures, in both modes,
trains exactly as the monolithic numpy reference does. No timing is asserted: timings belong to
`make bench`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.performance import bench, measuring, parallel, parallel_model, report, runs, sweeps, workloads
from trainer.data.direct import PinnedObject
from trainer.handlers import worker as worker_handler
from trainer.statemachine import Plan
from trainer.stores.codec import encode

ROW_KEYS = {
    "mode",
    "dtype",
    "epochs",
    "wall_s",
    "ratio_to_monolithic",
    "cpu_ratio_to_monolithic",
    "invocations",
    "round_trips_per_epoch",
    "redis_bytes_per_epoch",
    "final_cost",
    "cost_delta_vs_monolithic",
    "test_accuracy",
    "train_accuracy",
}
CHAIN_KEYS = {
    "modelled_lambda_s",
    "modelled_lambda_cold_s",
    "compute_s",
    "redis_s",
    "round_trips",
    "aws_calls",
    "handoff_bytes_per_epoch",
    "handoff_needed_bytes_per_epoch",
    "handoff_overhead_ratio",
}
SMALL = {
    "neurons": {"layer1": 8, "layer2": 4, "layer3": 1},
    "activations": {"layer1": "relu", "layer2": "tanh", "layer3": "sigmoid"},
    "learning_rate": 0.01,
    "optimizer": "adam",
    "batch_size": 64,
    "seed": 3,
    "init": "he",
}


def test_quick_bench_produces_every_row_and_column(stack, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--quick", "--epochs", "6", "--per-step-epochs", "2", "--output", str(out)]
    threads = measuring.threads_in_use()  # this process's: no fresh process for another count
    argv += ["--sections", "cat,breakdown,scaling,versus", "--thread-counts", str(threads)]
    assert bench.main(argv, stack=stack) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())

    rows = result["cat"]["rows"]
    assert [(r["mode"], r["dtype"]) for r in rows] == [
        (mode, dtype) for dtype in ("float64", "float32") for mode in ("monolithic", "per_step", "fused")
    ]
    for row in rows:
        assert not ROW_KEYS - row.keys(), ROW_KEYS - row.keys()
        assert row["epochs"] == 6
        assert row["wall_s"] > 0 and math.isfinite(row["ratio_to_monolithic"]) and row["ratio_to_monolithic"] > 0
        assert math.isfinite(row["final_cost"]) and 0 < row["final_cost"] < 2
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["train_accuracy"] <= 1.0
        assert row["cost_delta_vs_monolithic"] <= 1e-9  # the same arithmetic, whatever the chain
        if row["mode"] == "monolithic":
            assert row["invocations"] == 0 and row["ratio_to_monolithic"] == 1.0
            continue
        assert not CHAIN_KEYS - row.keys(), CHAIN_KEYS - row.keys()
        assert row["round_trips_per_epoch"] > 0 and row["redis_bytes_per_epoch"] > 0
        assert row["compute_s"] > 0 and row["redis_s"] > 0 and row["aws_calls"] > 0
        assert row["modelled_lambda_cold_s"] >= row["modelled_lambda_s"] > row["compute_s"]
        assert row["handoff_overhead_ratio"] >= 1.0  # moved >= strictly needed, by construction
        if row["mode"] == "fused":  # per_step re-reads unchanged weights at every step; fused does not
            assert row["handoff_overhead_ratio"] <= 1.1
    by = {(r["mode"], r["dtype"]): r for r in rows}
    plan = Plan(layers=4, epochs=6, batches=1)
    assert by["per_step", "float64"]["invocations"] == plan.total_steps  # one per step, extrapolated from 2 epochs
    assert by["per_step", "float64"]["extrapolated_from_epochs"] == 2
    assert by["fused", "float64"]["invocations"] == 1  # 6 epochs fit in one invocation's step budget
    # float32 moves half the bytes and gives nearly the same training
    assert by["fused", "float32"]["handoff_bytes_per_epoch"] < 0.6 * by["fused", "float64"]["handoff_bytes_per_epoch"]
    f32 = result["cat"]["float32"]
    assert abs(f32["final_cost_float32"] - f32["final_cost_float64"]) < 1e-4

    cost = by["fused", "float64"]["cost_per_run"]
    assert cost["requests"] == 2 and 0 < cost["lambda_compute"] < cost["total"]
    assert cost["operations"].get("sns:Publish", 0) >= 1 and cost["operations"].get("s3:PutObject", 0) >= 1

    table = result["scaling"]["table"]
    assert [s["factor"] for s in table] == [1, 2]
    for s in table:
        assert s["monolithic_s_per_epoch"] > 0 and s["fused_s_per_epoch"] > 0 and s["cost_delta"] <= 1e-9
    assert table[1]["examples"] == 2 * table[0]["examples"]
    # trainer environments started for the run: one data load per warm environment, memory above the
    # baseline, below 10x what it holds
    for d in result["scaling"]["data_path"]:
        assert d["invocations"] >= 1 and 1 <= d["data_loads"] <= d["environments"] <= d["invocations"]
        assert 0 < d["one_time_fraction"] < 1
        assert d["baseline_rss"] < d["peak_rss"] < d["baseline_rss"] + 10 * d["held_bytes"]
    assert [d["name"] for d in result["scaling"]["data_path"]] == ["cat x2", "mnist"]

    versus = result["versus"]
    assert [(v["workload"], v["dtype"], v["threads"]) for v in versus] == [
        (w, d, threads) for w in ("cat", "mnist") for d in ("float64", "float32")
    ]
    for v in versus:
        assert v["fused_wall_s"] > v["fused_compute_s"] > 0
        assert v["fused_servers_cpu_s"] > 0  # every hand-off goes through the Lambda service and Redis
        if v["workload"] == "mnist":  # learnable, and the chain is the monolithic trainer's arithmetic
            assert v["cost_delta_vs_monolithic"] <= 1e-9 and v["fused_test_accuracy"] > 0.2
        if runs.torch_python() is not None:  # the same run in PyTorch reaches the same place
            assert abs(v["torch_test_accuracy"] - v["fused_test_accuracy"]) <= 0.05
            assert v["ratio_to_torch"] > 0
        else:
            assert "ratio_to_torch" not in v and "absent" in printed

    # where an epoch goes: both products and the rest, each product's options timed on the same data
    breakdown = result["breakdown"]["rows"]
    assert [r["lnn"]["dtype"] for r in breakdown] == ["float64", "float32"]
    for r in breakdown:
        lnn = r["lnn"]
        assert lnn["epoch_ms"] > 0 and lnn["forward_ms"] > 0 and lnn["backward_ms"] > 0
        assert lnn["epoch_ms_with_best_options"] <= lnn["epoch_ms"] + 1e-9
        assert all(len(lnn["options_ms"][p]) >= 4 for p in ("forward", "backward"))
        assert any(lib["internal_api"] == "openblas" for lib in lnn["blas"])
        if runs.torch_python() is not None:
            assert r["torch"]["epoch_ms"] > 0 and r["torch"]["forward_ms"] > 0 and r["epoch_ratio"] > 0

    names = set(result["targets"])
    assert "cat fused Lambda compute per run" in names and "mnist: launch + first load / wall" in names
    assert all({"value", "bound", "met"} <= t.keys() for t in result["targets"].values())
    assert result["model"]["hop_ms"] == 50 and result["model"]["assumptions"]
    # the environments ran the image's Python, and their start-up (the warm-up's) is reported apart
    assert result["machine"]["functions_python"].startswith("3.12")
    start = result["environment_start"]
    assert start["count"] >= 2 and 0 < start["min"] <= start["max"]
    for text in ("monolithic", "per_step", "fused", "Modelled Lambda time", "strictly needed", "float32", "Scaling"):
        assert text in printed and text in result["table"]
    for text in ("Cost per run", "PyTorch", "Data path and memory", "Targets", "Where a cat epoch goes", "start-up"):
        assert text in printed


def test_what_binds_splits_a_rows_wall_time() -> None:
    row = {
        "fused_wall_s": 10.0,
        "fused_compute_s": 6.0,
        "torch_wall_s": 8.0,
        "fused_launch_s": 0.5,
        "fused_data_load_s": 0.25,
        "fused_invocations": 40,
        "fused_servers_cpu_s": 3.0,
        "threads": 2,
    }
    assert report._what_binds(row) == (
        "steps 6.00 s = 0.75x PyTorch's whole run (8.00 s); launch + first data load 0.75 s; commits, "
        "hand-offs and the finish 3.25 s (over 40 invocations); meanwhile the cloud's server processes "
        "(Lambda service + moto, redis-server) used 3.00 CPU-s, 15% of 2 core(s) over the run"
    )


def test_meter_counts_the_tensor_stores_redis_traffic(stack):
    """Round trips and value bytes, counted at the Redis client: one round trip per step read and per
    commit, and exactly the encoded tensors' bytes each way."""
    store = stack.services.tensor_store
    run_id = "meter-" + np.random.default_rng().bytes(4).hex()
    tensors = {"W1": np.arange(12.0).reshape(3, 4), "b1": np.zeros((3, 1))}
    blob_bytes = sum(len(encode(v)) for v in tensors.values())
    with measuring.metered(store) as meter:
        assert store.create_run(run_id, "{}", tensors)
        after_create = (meter.round_trips, meter.bytes_sent)
        _, _, read = store.snapshot(run_id, ["W1", "b1"])
        assert store.commit(run_id, -1, 0, {"W1": read["W1"] * 2}, "{}") == "OK"
    assert after_create[0] == 1 and after_create[1] == blob_bytes
    assert meter.round_trips == 3
    assert meter.bytes_received == blob_bytes
    assert meter.bytes_sent == blob_bytes + len(encode(tensors["W1"]))
    assert meter.state_bytes == 2 * blob_bytes + len(encode(tensors["W1"]))
    assert [kind for kind, _ in meter.log] == ["create_run", "snapshot", "commit"]
    store.delete_run(run_id, keep_cursor=False)
    # the meter is gone afterwards: the production store is as it was
    assert "execute_command" not in vars(store.client) and "commit" not in vars(store)


def test_importtime_total_is_the_top_level_imports():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |   numpy._core\n"
        "import time:       200 |        300 | numpy\n"
        "import time:        50 |        700 | trainer.handlers.launch\n"
    )
    parsed = measuring.parse_importtime(stderr)
    assert parsed["total_s"] == pytest.approx(0.001)
    assert [t["module"] for t in parsed["top"]] == ["trainer.handlers.launch", "numpy"]


@pytest.mark.parametrize("chain,max_steps", [("per_step", 2000), ("fused", 2000), ("fused", 7)])
def test_chain_matches_monolithic_on_a_small_network(stack, chain, max_steps):
    epochs = 6
    mono = runs.run_monolithic("moons", SMALL, epochs, "float64")
    row = runs.run_chain(stack, "moons", SMALL, epochs, "float64", chain, max_steps_per_invocation=max_steps)
    assert len(row["costs"]) == epochs
    for ours, reference in zip(row["costs"], mono["costs"], strict=True):
        assert abs(ours - reference) <= 1e-9
    assert abs(row["final_cost"] - mono["final_cost"]) <= 1e-9
    assert row["test_accuracy"] == mono["test_accuracy"]
    plan = Plan(layers=3, epochs=epochs, batches=-(-300 // 64))
    if chain == "per_step":
        assert row["invocations"] == plan.total_steps
    else:  # hand-offs mid-epoch and mid-batch still move only live, changed state
        assert row["invocations"] == -(-plan.total_steps // max_steps)
        assert row["handoff_overhead_ratio"] <= 1.1


def test_sweep_section_reports_each_figure_against_its_target(stack, tmp_path):
    """A small sweep section: ASHA against every trial to the end, and the Lambda model."""
    result = sweeps.sweep_section(stack, tmp_path, lambda _: None, epochs=12, hop_ms=40.0, trials=6)
    assert result["epochs_run_full"] == 6 * 12
    assert 0 < result["epochs_run_asha"] <= result["epochs_run_full"]
    assert result["compute_share"] == result["epochs_run_asha"] / result["epochs_run_full"]
    assert sum(result["by_state"].values()) == 6 and set(result["by_state"]) <= {"SUCCEEDED", "STOPPED"}
    assert 0 <= result["best_validation_asha"] <= result["best_validation_full"] <= 1
    assert result["modelled_sweep_s"] >= result["modelled_slowest_trial_s"] > 0
    assert result["cost"]["total_lambda"] > 0 and result["cost"]["requests"] > 6
    orders = result["orders"]
    assert orders["orders"] == 200 and 0 < orders["share_mean"] <= orders["share_max"] <= 1 and orders["gap_max"] >= 0
    targets = sweeps.targets(result)
    assert len(targets) == 3 and all(t["met"] == (t["value"] <= t["bound"]) for t in targets.values())
    assert any("Sweep:" in line for line in sweeps.render(result))


def test_parallel_section_measures_models_and_reports_every_target_with_its_figure(stack, tmp_path) -> None:
    """The parallel section at its smallest: the MNIST-shaped set at 2,000 examples with 1 and 2
    workers, tiled twice for the large workload, a worker SIGKILLed, and the Lambda model. No speed
    is asserted (that is `make bench`'s)."""
    path = workloads.mnist_like(tmp_path / "mnist-small.npz", train=2000, test=500)
    mnist = workloads.Workload("mnist", str(path), "small", workloads.MNIST_NETWORK, 1)
    result = parallel.section(stack, tmp_path, lambda _: None, mnist, 1, (1, 2), 2, 1)

    files = {2000: path, 4000: tmp_path / "mnist-x2.npz"}
    for block, examples in ((result["mnist"], 2000), (result["large"], 4000)):
        rows = {r["workers"]: r for r in block["rows"]}
        assert set(rows) == {1, 2}
        for row in rows.values():
            assert row["examples"] == examples and row["wall_s"] > row["math_s"] > 0
            assert row["outside_s"] == pytest.approx(row["wall_s"] - row["math_s"])
        assert rows[1]["reduce_bytes_per_worker_step"] == 0  # the chain reduces nothing
        # each worker's bytes per step, as the reduction store counted them, are what the model counts
        assert rows[2]["reduce_bytes_per_worker_step"] == pytest.approx(rows[2]["reduce_bytes_modelled"], rel=1e-3)
        assert rows[2]["final_cost"] == pytest.approx(rows[1]["final_cost"], rel=1e-5)  # float32 chain vs workers
        assert [m["workers"] for m in block["model"]] == list(parallel_model.MODELLED_WORKERS)
        # an uncompressed uint8 .npz: the workers' launch leaves the examples in the object, the chain's
        # reads the whole file and writes every example to the cache; the model moves those bytes at the
        # function's bandwidth
        assert rows[1]["launch_read_bytes"] == files[examples].stat().st_size
        x_bytes = examples * 784
        assert rows[2]["launch_read_bytes"] < files[examples].stat().st_size - x_bytes + 3 * PinnedObject.BLOCK
        assert rows[2]["launch_written_bytes"] < rows[1]["launch_written_bytes"] / 2
        bandwidth = parallel_model.Assumptions().function_bytes_s
        for m in block["model"]:
            row = rows[1] if m["workers"] == 1 else rows[2]
            moved = row["launch_read_bytes"] + row["launch_written_bytes"]
            assert m["launch_s"] == pytest.approx(row["launch_s"] + moved / bandwidth)
    assert result["large"]["speedup_n2"] == result["large"]["rows"][0]["wall_s"] / result["large"]["rows"][1]["wall_s"]

    stall = result["stall"]
    assert stall["workers"] == 2 and stall["victim"] == 1 and stall["killed_at_step"] >= 16 // 3
    # the survivor waits out the takeover bound once, then computes the lost worker's share itself:
    # the run ends with the calm run's bits
    assert stall["stall_s"] >= worker_handler.TAKEOVER_S > stall["calm_step_s"]
    assert stall["final_cost"] == result["mnist"]["rows"][1]["final_cost"]
    assert stall["steps_after"] >= 1
    at = stall["stall_at"]  # where the stall was: a survivor's longest step to end after the kill
    assert at["s"] == stall["stall_s"] and at["worker"] != 1 and at["step"] >= stall["killed_at_step"]
    # It began at the kill, or one step later: the step in flight at the kill may still end (the
    # victim's partials for it already out), and on a busy machine a step takes seconds.
    assert 0 <= at["after_kill_s"] <= at["s"] + (
        at["previous_s"] or 0
    ) + 1 and f"worker {at['worker']}'s step {at['step']}" in "\n".join(parallel.render(result))
    assert 1 not in stall["invocations_by_worker"]  # its killed invocation left no line and was not retried

    assert [s["workers"] for s in result["sync_1mb"]] == list(parallel_model.MODELLED_WORKERS[1:])
    assert [b["workers"] for b in result["break_even"]] == list(parallel_model.MODELLED_WORKERS[1:])
    # what was measured, analysed again (as `python -m tests.performance.parallel` does a saved run), gives
    # the same figures; under another bandwidth, other ones
    assert parallel.analyse(result["measured"], parallel_model.Assumptions()) == result
    slower = parallel.analyse(result["measured"], parallel_model.Assumptions(function_mbps=300))
    assert slower["sync_1mb"][0]["lnn_s"] > result["sync_1mb"][0]["lnn_s"]

    targets = parallel.targets(result)
    assert len(targets) == 5 and all(name.startswith("parallel: ") for name in targets)
    printed = "\n".join(parallel.render(result))
    for name, t in targets.items():
        line = parallel.target_line(name, t)
        assert name in line and ("at least" if t["at_least"] else "bound") in line
        if t["value"] is None:  # only the PyTorch comparison, without .venv-torch
            assert runs.torch_python() is None and "absent" in line and "absent" in printed
            continue
        assert math.isfinite(t["value"]) and f"{t['value']:.4g}" in line
        assert t["met"] == (t["value"] >= t["bound"] if t["at_least"] else t["value"] <= t["bound"])
    for text in (
        "Data-parallel training",
        "outside the math",
        "Modelled on Lambda",
        "LambdaML",
        "When adding",
        "SIGKILL",
    ):
        assert text in printed
    assert f"{result['large']['speedup_n2']:.2f}x" in printed and f"{stall['stall_s']:.2f} s" in printed

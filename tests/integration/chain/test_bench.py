"""The benchmark runs end to end (a --quick run on the session's servers) and produces every row and
column with sane values; and the chain it measures, in both modes, trains exactly as the monolithic
numpy reference does. No timing is asserted: timings belong to `make bench`."""

from __future__ import annotations

import json
import math

import pytest

from trainer import bench
from trainer.statemachine import Plan

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
    assert bench.main(argv, stack=stack) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())

    rows = result["rows"]
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
    f32 = result["float32"]
    assert abs(f32["final_cost_float32"] - f32["final_cost_float64"]) < 1e-4

    assert [s["factor"] for s in result["scaling"]] == [1, 2]
    for s in result["scaling"]:
        assert s["monolithic_s_per_epoch"] > 0 and s["fused_s_per_epoch"] > 0 and s["cost_delta"] <= 1e-9
    assert result["scaling"][1]["examples"] == 2 * result["scaling"][0]["examples"]

    assert set(result["targets"]) == {
        "fused_ratio_le_1.10",
        "fused_identical_cost",
        "modelled_fused_lt_600s",
        "fused_handoff_bytes_le_1.1x_needed",
    }
    assert result["model"]["hop_ms"] == 50 and result["model"]["assumptions"]
    for text in ("monolithic", "per_step", "fused", "Modelled Lambda time", "strictly needed", "float32", "Scaling"):
        assert text in printed and text in result["table"]


@pytest.mark.parametrize("chain,max_steps", [("per_step", 2000), ("fused", 2000), ("fused", 7)])
def test_chain_matches_monolithic_on_a_small_network(stack, chain, max_steps):
    epochs = 6
    mono = bench.run_monolithic("moons", SMALL, epochs, "float64")
    row = bench.run_chain(stack, "moons", SMALL, epochs, "float64", chain, max_steps_per_invocation=max_steps)
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

"""Data-parallel training gives the same bits whatever the number of workers (trainer/parallel)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainer import engine
from trainer.nn import monolithic
from trainer.nn.init import initialise
from trainer.parallel import reference, shards, tree
from trainer.parallel.flat import Layout

WORKER_COUNTS = (1, 2, 4, 8, 16)


def _problem(output: str, dtype: str, m: int = 203, features: int = 12):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(features, m)).astype(dtype)
    classes = 2 if output == "sigmoid" else 3
    y = rng.integers(0, classes, size=(1, m)).astype(dtype)
    sizes = [features, 7, 5, 1 if output == "sigmoid" else 3]
    activations = ["relu", "tanh", output]
    return x, y, initialise(sizes, "he", 3, dtype), activations


def _bits(params: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {name: value.tobytes() for name, value in sorted(params.items())}


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("l2", [0.0, 0.7])
@pytest.mark.parametrize("batch_size", [None, 37], ids=["full-batch", "mini-batch"])
def test_weights_costs_and_state_are_bit_identical_for_every_number_of_workers(optimizer, dtype, l2, batch_size):
    output = "softmax" if optimizer != "momentum" else "sigmoid"
    x, y, params, activations = _problem(output, dtype)
    runs = {
        n: reference.train(x, y, params, activations, 3, 0.05, optimizer, l2, batch_size, seed=5, workers=n)
        for n in WORKER_COUNTS
    }
    weights, costs, state, hits = runs[1]
    assert all(v.dtype == np.dtype(dtype) for v in weights.values())
    assert not any(np.array_equal(weights[k], params[k]) for k in params if k.startswith("W")), "it trained"
    assert len(hits) == 3 and all(0 < h < x.shape[1] for h in hits), hits
    for n in WORKER_COUNTS[1:]:
        assert _bits(runs[n].params) == _bits(weights), f"weights differ with {n} workers"
        assert runs[n].costs == costs, f"cost curve differs with {n} workers"
        assert _bits(runs[n].state) == _bits(state), f"optimizer state differs with {n} workers"
        assert runs[n].hits == hits, f"the epochs' hits differ with {n} workers"


@pytest.mark.parametrize("workers", [3, 5, 6, 7, 11, 13])
def test_worker_counts_that_do_not_divide_the_micro_shards_give_the_same_bits(workers):
    x, y, params, activations = _problem("softmax", "float32")
    one = reference.train(x, y, params, activations, 2, 0.05, "adam", 0.3, 29, seed=2, workers=1)
    many = reference.train(x, y, params, activations, 2, 0.05, "adam", 0.3, 29, seed=2, workers=workers)
    assert _bits(many.params) == _bits(one.params) and many.costs == one.costs and many.hits == one.hits


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
@pytest.mark.parametrize("batch_size", [None, 37], ids=["full-batch", "mini-batch"])
def test_float64_agrees_with_the_chains_reference_within_1e_9(optimizer, batch_size):
    """The chain (whose reference is monolithic.train) sums a batch's gradient in one product, not
    in the micro-shard tree: the same examples, so the same values up to rounding."""
    x, y, params, activations = _problem("softmax", "float64")
    chain_params, chain_costs = monolithic.train(x, y, params, activations, 4, 0.05, optimizer, 0.4, batch_size, 5)
    par_params, par_costs, _, _ = reference.train(x, y, params, activations, 4, 0.05, optimizer, 0.4, batch_size, 5, 4)
    np.testing.assert_allclose(par_costs, chain_costs, rtol=1e-9, atol=0)
    for name in chain_params:
        np.testing.assert_allclose(par_params[name], chain_params[name], rtol=1e-9, atol=1e-12)


def test_the_order_of_summation_matters_so_the_tree_is_fixed():
    """Float addition is not associative: summing the same partials as they happen to arrive gives
    other bits than the tree, which is why the tree's shape never depends on the workers."""
    rng = np.random.default_rng(0)
    leaves = {k: (rng.normal(size=1000) * 10.0 ** rng.integers(-4, 4)).astype(np.float32) for k in range(16)}
    root = tree.node_value(tree.ROOT, leaves)
    arrival = np.zeros(1000, dtype=np.float32)
    for k in rng.permutation(16):
        arrival = arrival + leaves[int(k)]
    assert root.tobytes() != arrival.tobytes()
    np.testing.assert_allclose(arrival, root, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("workers", range(1, shards.MAX_WORKERS + 1))
def test_any_workers_nodes_tile_the_leaves_and_give_the_trees_root(workers):
    rng = np.random.default_rng(workers)
    leaves = {k: rng.normal(size=50).astype(np.float32) for k in range(shards.MICRO_SHARDS)}
    nodes = {}
    for w in range(workers):
        mine = shards.micro_shards_of(workers, w)
        cover = tree.cover(mine)
        assert [k for node in cover for k in tree.leaves_of(node)] == list(mine)
        nodes.update({node: tree.node_value(node, leaves) for node in cover})
    assert tree.root_value(nodes).tobytes() == tree.node_value(tree.ROOT, leaves).tobytes()


def test_cover_is_the_fewest_aligned_nodes():
    assert tree.cover(range(0, 16)) == [tree.ROOT]
    assert tree.cover(range(0, 8)) == [(3, 0)]
    assert tree.cover(range(3, 11)) == [(0, 3), (2, 1), (1, 4), (0, 10)]
    assert tree.cover(range(5, 5)) == []
    for start, stop in itertools.combinations(range(17), 2):
        nodes = tree.cover(range(start, stop))
        assert [k for node in nodes for k in tree.leaves_of(node)] == list(range(start, stop))


def test_a_missing_partial_is_named():
    supplied = {(0, k): np.ones(2) for k in range(15)}
    with pytest.raises(KeyError, match="micro-shard 15"):
        tree.root_value(supplied)


def test_a_batch_is_split_among_the_micro_shards_by_where_its_examples_are_held():
    examples = 203
    cut = shards.bounds(examples, shards.MICRO_SHARDS)
    assert cut[0] == 0 and cut[-1] == examples and max(np.diff(cut)) - min(np.diff(cut)) <= 1
    columns = np.random.default_rng(1).permutation(examples)[:37]
    split = shards.split_batch(columns, examples)
    assert sorted(np.concatenate(split).tolist()) == sorted(columns.tolist())
    for k, part in enumerate(split):
        assert all(cut[k] <= c < cut[k + 1] for c in part)
        assert list(part) == [c for c in columns if cut[k] <= c < cut[k + 1]]  # the batch's order
    full = shards.split_batch(None, examples)
    assert [len(p) for p in full] == list(np.diff(cut))


def test_each_worker_holds_one_contiguous_slice_and_together_all_of_them():
    for workers in range(1, shards.MAX_WORKERS + 1):
        held = [shards.examples_of(1000, shards.micro_shards_of(workers, w)) for w in range(workers)]
        assert held[0][0] == 0 and held[-1][1] == 1000
        assert all(held[i][1] == held[i + 1][0] for i in range(workers - 1))


@pytest.mark.parametrize("workers", [0, 17, -1, 2.0, True, "4"])
def test_a_worker_count_out_of_range_is_refused(workers):
    with pytest.raises(ValueError, match="workers must be an integer from 1 to 16"):
        shards.check_workers(workers)


def test_the_chunks_tile_the_flat_vector_and_l2_spans_only_the_weights():
    layout = Layout.of([4, 3, 2])
    assert layout.size == 4 * 3 + 3 + 3 * 2 + 2
    for workers in range(1, 17):
        chunks = layout.chunks(workers)
        assert chunks[0][0] == 0 and chunks[-1][1] == layout.size
        assert all(chunks[i][1] == chunks[i + 1][0] for i in range(workers - 1))
    assert layout.weight_spans(0, layout.size) == [(0, 12), (15, 21)]
    assert layout.weight_spans(10, 17) == [(0, 2), (5, 7)]
    params = initialise([4, 3, 2], "he", 1, "float32")
    assert _bits(layout.unflatten(layout.flatten(params))) == _bits(params)


def _scored(workers: int, dtype: str, optimizer: str, batch_size: int | None) -> tuple[list[float], list[tuple]]:
    """The epoch costs and every epoch's validation scores (engine.evaluate_model on held-out
    examples, of the parameters the epoch ended with) of a run with `workers` workers."""
    x, y, params, activations = _problem("softmax", dtype)
    x_val, y_val, _, _ = _problem("softmax", dtype, m=61)
    scores: list[tuple] = []

    def score(epoch: int, weights: dict[str, np.ndarray]) -> None:
        assert epoch == len(scores)
        scores.append(engine.evaluate_model(activations, weights, x_val, y_val))

    _, costs, _, _ = reference.train(
        x, y, params, activations, 3, 0.05, optimizer, 0.2, batch_size, seed=5, workers=workers, on_epoch=score
    )
    return costs, scores


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("optimizer", "batch_size"), [("adam", None), ("momentum", 37)])
def test_validation_scores_are_bit_identical_for_1_2_and_4_workers(dtype, optimizer, batch_size):
    costs, scores = _scored(1, dtype, optimizer, batch_size)
    assert len(scores) == 3 and all(0.0 <= accuracy <= 1.0 for _, accuracy in scores)
    assert len({cost for cost, _ in scores}) == 3, "every epoch scored on its own parameters"
    for workers in (2, 4):
        assert _scored(workers, dtype, optimizer, batch_size) == (costs, scores), f"{workers} workers"


def test_validation_scores_agree_with_the_chains_within_1e_9():
    """The chain scores the parameters each epoch ended with, which agree with the workers' to
    rounding: so do the scores (the same function, engine.evaluate_model)."""
    _, scores = _scored(4, "float64", "adam", 37)
    x, y, params, activations = _problem("softmax", "float64")
    x_val, y_val, _, _ = _problem("softmax", "float64", m=61)
    for epoch, (cost, accuracy) in enumerate(scores):
        chain_params, _ = monolithic.train(x, y, params, activations, epoch + 1, 0.05, "adam", 0.2, 37, 5)
        chain_cost, chain_accuracy = engine.evaluate_model(activations, chain_params, x_val, y_val)
        assert cost == pytest.approx(chain_cost, rel=1e-9, abs=0) and accuracy == chain_accuracy, epoch


def test_an_epochs_hits_are_its_examples_classified_right_by_the_parameters_its_batch_met():
    """Full batch: epoch e's one batch meets the parameters epoch e - 1 ended with (the initial ones
    for epoch 0), before its update; its hits are those parameters' right predictions."""
    x, y, params, activations = _problem("softmax", "float64")
    trained = reference.train(x, y, params, activations, 3, 0.05, "adam", 0.2, None, seed=5, workers=4)
    met = [params] + [
        reference.train(x, y, params, activations, e, 0.05, "adam", 0.2, None, seed=5, workers=4).params for e in (1, 2)
    ]

    def right(p: dict[str, np.ndarray]) -> int:
        return int(np.sum(engine.predict(activations, p, x) == y.astype(np.int64)))

    assert trained.hits == [right(p) for p in met]
    # the parameters each batch's update made would count otherwise: the test tells them apart
    assert trained.hits != [right(p) for p in [*met[1:], trained.params]]


@pytest.mark.parametrize("batch_size", [None, 100], ids=["full-batch", "mini-batch"])
def test_the_hits_are_the_chains_training_accuracy(batch_size):
    """The chain (on fakes of its ports, its real steps) records each epoch's `accuracy` of a run
    that holds examples out: its batches' right predictions as they met them, of its training
    examples. The workers' hits, summed in the tree, are that count: the same figure, exactly."""
    from tests.fakes import fake_services
    from tests.fakes.chain import drain, launch
    from tests.support.parallel import REQUEST, expected_accuracy

    svc = fake_services()
    request = {**REQUEST, "validation_fraction": 0.2, "chain": "fused", "checkpoint_every": 0}
    if batch_size is None:
        request.pop("batch_size")
    run_id = launch(svc, **request)
    drain(svc)
    assert svc.run_store.get_run(run_id)["status"] == "SUCCEEDED"
    chain = [float(e["accuracy"]) for e in sorted(svc.run_store.epochs(run_id), key=lambda e: int(e["epoch"]))]
    assert len(chain) == REQUEST["epochs"] and len(set(chain)) > 1, chain
    for workers in (1, 2, 4):
        assert expected_accuracy({**request, "workers": workers}) == chain, workers

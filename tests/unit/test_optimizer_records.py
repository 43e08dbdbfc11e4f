"""One record per optimizer, one memory model: the request, the cache's check, the trainer's check and
the README's table all say what the records say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trainer import capacity, request
from trainer.nn import footprint, optimizers

ROOT = Path(__file__).resolve().parents[2]
BASE = {"dataset": "moons", "neurons": {"layer1": 5, "layer2": 1}, "epochs": 1, "learning_rate": 0.1}
BASE["activations"] = {"layer1": "tanh", "layer2": "sigmoid"}


def _table_rows() -> dict[str, list[str]]:
    text = (ROOT / "trainer" / "README.md").read_text()
    section = text.split("## Optimizers and the memory model", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells[1:]] for cells in rows}


def test_the_readme_table_is_the_records():
    rows = _table_rows()
    assert list(rows) == list(optimizers.OPTIMIZERS)
    for record in optimizers.RECORDS:
        state, slots, summary = rows[record.name]
        assert state == (", ".join(record.state_names(1)) or "—")
        assert int(slots) == footprint.memory_slots(record.name)
        assert summary == record.summary


def test_the_top_level_readme_offers_every_optimizer():
    (row,) = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `optimizer` |")]
    assert re.findall(r"`(\w+)`", row.split("|")[2]) == list(optimizers.OPTIMIZERS)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_the_request_accepts_exactly_the_records(name):
    parsed, problems = request.parse({**BASE, "optimizer": name})
    assert problems == [] and parsed is not None and parsed.optimizer == name
    _, problems = request.parse({**BASE, "optimizer": name.upper()})
    assert problems == [
        f"optimizer: must be one of {', '.join(map(repr, optimizers.OPTIMIZERS))}, got {name.upper()!r}"
    ]


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_the_memory_model_counts_value_and_state_twice(name):
    """A parameter keeps its value and its state tensors, and a commit a second copy of each."""
    params = {"W1": np.zeros((5, 2)), "b1": np.zeros((5, 1))}
    state = optimizers.initial_state(name, params, 1)
    per_parameter = (len(params) + len(state)) / len(params)  # W1 with its state, b1 with its state
    assert footprint.memory_slots(name) == 2 * per_parameter


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_the_cache_and_the_trainer_count_the_network_alike(name):
    parsed, _ = request.parse({**BASE, "optimizer": name, "batch_size": 40})
    features, examples = 2, 150
    sizes = [features, 5, 1]
    data = {"x_train": np.zeros((features, examples))}
    cache_network = capacity.run_bytes(data, sizes, 40, 8, name) - data["x_train"].nbytes
    trainer_network = request.estimate_bytes(parsed, features, examples) - 8 * features * examples * 2
    assert cache_network == trainer_network == 8 * footprint.network_numbers(sizes, 40, name)


def test_an_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown optimizer 'nadam'; expected one of gd, momentum, adam"):
        optimizers.update("nadam", 1, {}, {}, {}, 0.1, 1)

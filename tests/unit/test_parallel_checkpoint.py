"""A data-parallel checkpoint holds the owners' optimizer-state chunks put together per key (the
chain's vW1, sW1, ... once unflattened); a resume cuts them back into the chunks the owners
publish, with the same bits, for any number of workers."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.parallel import worker
from trainer.parallel.flat import Layout

SIZES = (5, 7, 3)


@pytest.mark.parametrize("workers", [2, 3, 4, 16])
@pytest.mark.parametrize(("optimizer", "keys"), [("adam", ("v", "s")), ("momentum", ("v",)), ("gd", ())])
def test_owners_state_chunks_round_trip_through_the_full_state(workers, optimizer, keys) -> None:
    layout = Layout.of(SIZES)
    rng = np.random.default_rng(workers)
    full = {k: rng.normal(size=layout.size) for k in keys}
    job = worker.Job(SIZES, ("tanh", "softmax"), optimizer, 0.1, 0.0, None, 40, 2, 1, workers)
    packed = worker.packed_states(SIZES, optimizer, workers, full, "float64")
    assert len(packed) == workers
    for (a, b), chunk in zip(layout.chunks(workers), packed, strict=True):
        assert chunk.size == (b - a) * len(keys)
    back = worker.full_state(job, packed)
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in full.items()}

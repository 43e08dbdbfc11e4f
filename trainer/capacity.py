"""Does a run fit in the cache?

The cache never evicts (the stack's parameter group sets ``maxmemory-policy noeviction``), so a run
too large for it would fail at its first write that does not fit -- or, with an evicting policy,
lose its state silently. LaunchLambda therefore refuses, before writing anything, a run whose
tensors would not fit in the memory Redis may fill (``CACHE_CAPACITY_MIB``, set by Terraform from
the node type).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from trainer.nn import footprint

if TYPE_CHECKING:
    from trainer.data.loader import Dataset
    from trainer.request import TrainingRequest

# Share of the cache one run may take: the rest is for the runs already there and Redis's own
# per-key overhead.
RUN_SHARE = 0.9


def run_bytes(arrays: Mapping[str, np.ndarray], sizes: Sequence[int], batch: int, itemsize: int, optimizer: str) -> int:
    """Bytes a run keeps in the cache: its data, and its network as the memory model counts it
    (trainer.nn.footprint: parameters with their optimizer state, one batch's activations)."""
    data = sum(int(a.nbytes) for a in arrays.values())
    return data + itemsize * footprint.network_numbers(sizes, batch, optimizer)


def check(needed_bytes: int, capacity_mib: int | None) -> list[str]:
    """The problem, if any, of a run needing `needed_bytes` in a cache of `capacity_mib` MiB
    (None: capacity unknown, e.g. a local Redis; nothing to check)."""
    if capacity_mib is None or needed_bytes <= capacity_mib * 2**20 * RUN_SHARE:
        return []
    return [
        f"dataset: the run needs about {needed_bytes / 2**20:,.0f} MiB in the cache, more than "
        f"{RUN_SHARE:.0%} of the {capacity_mib:,} MiB it holds; use fewer examples, dtype float32, "
        "a smaller batch_size, or a larger Redis node (terraform: redis_node_type)"
    ]


def needed_for(request: TrainingRequest, dataset: Dataset) -> int:
    """run_bytes of a validated TrainingRequest on its prepared Dataset."""
    return run_bytes(
        dataset.arrays(),
        [dataset.features, *request.neuron_list()],
        min(request.batch_size or dataset.examples, dataset.examples),
        np.dtype(request.dtype).itemsize,
        request.optimizer,
    )

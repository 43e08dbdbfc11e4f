"""The memory model: how many numbers a run keeps, in the trainer's memory and in the cache alike.

Per parameter, both keep its value and its optimizer's state (gd none, momentum one velocity, adam
two moments), and at a commit a second copy of each: the trainer holds the encoded bytes it sends
beside its working set, and the cache receives the new values while it still stores the old (a
fused invocation commits every layer at once). A gradient (dW, db) is never kept: it is computed and
used inside one layer's backward step. So a parameter costs 2 x (1 + state) numbers: gd 2,
momentum 4, adam 6. One batch's activations cost Z or A, and dA, of every layer, and one more
for the step in flight.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.nn import optimizers

ACTIVATION_SLOTS = 3


def memory_slots(optimizer: str) -> int:
    """Numbers kept per parameter: its value and its state, twice over at a commit."""
    return 2 * (1 + len(optimizers.record(optimizer).state))


def parameter_count(sizes: Sequence[int]) -> int:
    """W and b of every layer, for layer sizes (features, layer1, ..., layerL)."""
    return sum(sizes[i] * sizes[i - 1] + sizes[i] for i in range(1, len(sizes)))


def network_numbers(sizes: Sequence[int], batch: int, optimizer: str) -> int:
    """The numbers a run's network keeps: its parameters with their state, and one batch's activations."""
    return parameter_count(sizes) * memory_slots(optimizer) + sum(sizes[1:]) * batch * ACTIVATION_SLOTS

"""Every parameter of the network in one flat vector (W1, b1, W2, b2, ...), and its chunks.

The reduce-scatter cuts the flat gradient into one chunk per worker: worker j sums everyone's
partials of chunk j only, updates chunk j of the parameters and of the optimizer's state, and the
workers then gather the new chunks. Each worker so moves about three times the parameter vector per
step whatever their number, instead of one summer receiving N vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.parallel.shards import bounds


@dataclass(frozen=True)
class Segment:
    name: str  # "W1", "b1", ...
    start: int
    shape: tuple[int, int]

    @property
    def stop(self) -> int:
        return self.start + self.shape[0] * self.shape[1]

    @property
    def is_weight(self) -> bool:
        return self.name.startswith("W")


@dataclass(frozen=True)
class Layout:
    segments: tuple[Segment, ...]

    @classmethod
    def of(cls, sizes: tuple[int, ...] | list[int]) -> Layout:
        """sizes: the input features, then the neurons of layer 1..L."""
        segments, start = [], 0
        for layer in range(1, len(sizes)):
            for name, shape in ((f"W{layer}", (sizes[layer], sizes[layer - 1])), (f"b{layer}", (sizes[layer], 1))):
                segments.append(Segment(name, start, shape))
                start += shape[0] * shape[1]
        return cls(tuple(segments))

    @property
    def size(self) -> int:
        return self.segments[-1].stop

    def flatten(self, arrays: dict[str, np.ndarray], prefix: str = "") -> np.ndarray:
        """One vector of the named arrays (prefix "v" for vW1, vb1, ... of an optimizer's state)."""
        return np.concatenate([arrays[prefix + s.name].reshape(-1) for s in self.segments])

    def unflatten(self, vector: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + s.name: vector[s.start : s.stop].reshape(s.shape).copy() for s in self.segments}

    def chunks(self, workers: int) -> list[tuple[int, int]]:
        """Worker j's chunk [start, stop) of the flat vector."""
        cut = bounds(self.size, workers)
        return [(cut[j], cut[j + 1]) for j in range(workers)]

    def weight_spans(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The parts of [start, stop) that are weights (L2 applies to them, not to the biases),
        relative to start."""
        spans = []
        for s in self.segments:
            lo, hi = max(start, s.start), min(stop, s.stop)
            if s.is_weight and lo < hi:
                spans.append((lo - start, hi - start))
        return spans

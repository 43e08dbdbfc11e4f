"""Everything a step needs to know about its run, fixed at launch and stored beside the tensors."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from trainer.statemachine import Plan


@dataclass(frozen=True)
class RunConfig:
    run_id: str
    sizes: tuple[int, ...]  # input features, then the neurons of layer 1..L
    activations: tuple[str, ...]  # layer 1..L
    optimizer: str
    learning_rate: float
    l2: float
    batch_size: int  # effective: the training-set size for full batch
    examples: int
    epochs: int
    seed: int
    dtype: str
    classes: int
    chain: str
    max_steps_per_invocation: int
    time_margin_ms: int
    notify_every: int
    checkpoint_every: int
    data_digest: str
    dataset: str

    @property
    def layers(self) -> int:
        return len(self.activations)

    @property
    def batches(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    @property
    def full_batch(self) -> bool:
        return self.batch_size >= self.examples

    @property
    def plan(self) -> Plan:
        return Plan(layers=self.layers, epochs=self.epochs, batches=self.batches)

    @property
    def output_activation(self) -> str:
        return self.activations[-1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunConfig:
        data = json.loads(text)
        data["sizes"] = tuple(data["sizes"])
        data["activations"] = tuple(data["activations"])
        return cls(**data)

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
    # A sweep's trial: its sweep, its number, and the epoch counts at which its scheduler judges
    # it (empty without early stopping). Its data then holds validation examples, scored each epoch.
    sweep_id: str = ""
    trial: int = -1
    rungs: tuple[int, ...] = ()
    # The ASHA reduction factor the rungs were laid out with, which the scheduler judges by: fixed
    # with them when the trial starts. 0 without early stopping, and in configs stored before the
    # field existed (their scheduler reads it from the sweep's request).
    reduction_factor: int = 0
    # A run's share of its training set held out as validation examples (0: none; a sweep's trial
    # has its sweep's split instead). Its data then holds them, scored each epoch.
    validation_fraction: float = 0.0
    # Data-parallel workers (trainer/parallel); 1 is the chain. Configs stored before the field read as 1.
    workers: int = 1

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
    def in_sweep(self) -> bool:
        return bool(self.sweep_id)

    @property
    def validates(self) -> bool:
        """Whether the run holds validation examples out, to score each epoch."""
        return self.in_sweep or self.validation_fraction > 0

    def closes_rung(self, epoch: int) -> bool:
        """Whether epoch (0-based) is the last one before a rung."""
        return epoch + 1 in self.rungs

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
        data["rungs"] = tuple(data.get("rungs", ()))
        return cls(**data)

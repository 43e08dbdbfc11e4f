"""Executes one state of the chain on an in-memory working set. No I/O here.

Each step names the tensors it reads (`inputs_of`) so the caller can fetch exactly those from
the tensor store in one round trip; what it writes is marked dirty, and what no later step
reads is dropped at once, so a hand-off only moves live state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trainer.data import normalize
from trainer.nn import layers, losses, optimizers
from trainer.nn.batches import epoch_permutation
from trainer.runconfig import RunConfig
from trainer.statemachine import Event, State


@dataclass
class TrainData:
    """The run's read-only inputs, column layout, and the mini-batch the steps are working on."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    x_val: np.ndarray | None = None  # the held-out examples of a run that validates
    y_val: np.ndarray | None = None
    # One batch's columns at a time: the seven-odd steps of a batch share them, and the examples of
    # the first layer's forward step are gathered again only by its backward step's read of X.
    _batch_key: tuple[int, int, int] | None = field(default=None, init=False, repr=False)
    _batch_cols: np.ndarray | None = field(default=None, init=False, repr=False)
    _batch_x: np.ndarray | None = field(default=None, init=False, repr=False)
    _order_key: tuple[int, int, int] | None = field(default=None, init=False, repr=False)
    _order: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # Integer x arrive raw and examples first (loader.Dataset.compact) and are normalised here,
        # into the run's dtype (the labels'), exactly as the launch would have. Either way the result is
        # examples-major in memory (each example's features contiguous), as the normalisation
        # lays it out: W1 @ X and dZ1 @ X.T run markedly faster on it than on the row-major copy
        # the codec returns (the largest products of a step); values unchanged.
        stats = {"shift": self.shift, "scale": self.scale}
        for name in ("x_train", "x_test", "x_val"):
            x = getattr(self, name)
            if x is None:
                continue
            if x.dtype.kind in "ui":
                setattr(self, name, normalize.apply(stats, x, self.y_train.dtype))
            else:
                setattr(self, name, np.asfortranarray(x))

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out examples and their labels of a run that validates (a sweep's trial, or a run
        with a validation_fraction)."""
        if self.x_val is None or self.y_val is None:
            raise ValueError("the run's data has no validation examples (it holds none out)")
        return self.x_val, self.y_val

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        key = (seed, epoch, self.x_train.shape[1])
        if self._order_key != key:
            self._order, self._order_key = epoch_permutation(seed, epoch, self.x_train.shape[1]), key
        assert self._order is not None
        return self._order

    def columns(self, config: RunConfig, epoch: int, batch: int) -> np.ndarray | None:
        if config.full_batch:
            return None
        key = (config.seed, epoch, batch)
        if self._batch_key != key:
            order = self.epoch_order(config.seed, epoch)
            self._batch_cols = order[batch * config.batch_size : (batch + 1) * config.batch_size]
            self._batch_key, self._batch_x = key, None
        return self._batch_cols

    def x(self, config: RunConfig, epoch: int, batch: int) -> np.ndarray:
        columns = self.columns(config, epoch, batch)
        if columns is None:
            return self.x_train
        if self._batch_x is None:
            self._batch_x = self.x_train[:, columns]
        return self._batch_x

    def y(self, config: RunConfig, epoch: int, batch: int) -> np.ndarray:
        columns = self.columns(config, epoch, batch)
        return self.y_train if columns is None else self.y_train[:, columns]

    def batch_size(self, config: RunConfig, epoch: int, batch: int) -> int:
        columns = self.columns(config, epoch, batch)
        return self.x_train.shape[1] if columns is None else len(columns)


@dataclass
class WorkingSet:
    """Tensors held by this invocation; `dirty` are those not yet in the tensor store."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def load(self, values: dict[str, np.ndarray]) -> None:
        self.tensors.update(values)

    def put(self, name: str, value: np.ndarray) -> None:
        self.tensors[name] = value
        self.dirty.add(name)

    def drop(self, name: str) -> None:
        self.tensors.pop(name, None)
        self.dirty.discard(name)

    def take_dirty(self) -> dict[str, np.ndarray]:
        out = {name: self.tensors[name] for name in sorted(self.dirty)}
        self.dirty.clear()
        return out


@dataclass(frozen=True)
class StepOutcome:
    epoch_cost: float | None = None  # set by the step that completes an epoch
    # With it, of a run that validates: the share of the epoch's examples its batches classified
    # right as they met them (the moment its cost is measured at).
    epoch_accuracy: float | None = None


def weight_names(config: RunConfig) -> list[str]:
    """The model: every layer's W and b (what the finish reads and saves)."""
    return [name for layer in range(1, config.layers + 1) for name in (f"W{layer}", f"b{layer}")]


def param_names(config: RunConfig) -> list[str]:
    names = []
    for layer in range(1, config.layers + 1):
        names += [f"W{layer}", f"b{layer}", *optimizers.state_names(config.optimizer, layer)]
    return names


def inputs_of(config: RunConfig, event: Event) -> list[str]:
    """Tensor-store names the step reads (the training data comes from TrainData)."""
    L, layer = config.layers, event.layer
    if event.state == State.START:
        return []
    if event.state == State.FINISH:
        return [*weight_names(config), "cost"]
    if event.state == State.FORWARD and layer <= L:
        names = [f"W{layer}", f"b{layer}"]
        if layer > 1:
            names.append(f"A{layer - 1}")
            if config.l2:
                names.append("l2sum")
        return names
    if event.state == State.FORWARD:  # the loss
        return [f"Z{L}", "cost", *(["l2sum"] if config.l2 else []), *(["hits"] if config.validates else [])]
    names = [f"W{layer}", f"b{layer}", *optimizers.state_names(config.optimizer, layer)]
    names += ["dZ"] if layer == L else [f"dA{layer}", f"A{layer}"]
    if layer > 1:
        names.append(f"A{layer - 1}")
    elif event.batch == config.batches - 1:
        names.append("cost")  # the step that closes the epoch reports its cost
        if config.validates:
            names.append("hits")
    return names


def run_step(config: RunConfig, event: Event, ws: WorkingSet, data: TrainData) -> StepOutcome:
    L, layer = config.layers, event.layer
    if event.state == State.START:
        ws.put("cost", np.zeros(1, dtype=np.float64))
        if config.validates:
            ws.put("hits", np.zeros(1, dtype=np.float64))  # a count: exact in a float64
        return StepOutcome()
    if event.state == State.FINISH:
        return StepOutcome()
    epoch, batch = event.epoch, event.batch
    m = data.batch_size(config, epoch, batch)
    if event.state == State.FORWARD and layer <= L:
        a_prev = data.x(config, epoch, batch) if layer == 1 else ws[f"A{layer - 1}"]
        w, b = ws[f"W{layer}"], ws[f"b{layer}"]
        out = layers.forward(a_prev, w, b, config.activations[layer - 1], output=layer == L)
        ws.put(f"Z{L}" if layer == L else f"A{layer}", out)
        if config.l2:
            previous = ws["l2sum"][0] if layer > 1 else 0.0
            ws.put("l2sum", np.array([previous + layers.l2_term(w)], dtype=np.float64))
        return StepOutcome()
    if event.state == State.FORWARD:  # the loss, once layer > L
        cost, dz = losses.loss_and_gradient(config.output_activation, ws[f"Z{L}"], data.y(config, epoch, batch))
        if config.l2:
            cost += config.l2 / (2 * m) * float(ws["l2sum"][0])
            ws.drop("l2sum")
        if config.validates:
            labels = data.y(config, epoch, batch)
            ws.put("hits", ws["hits"] + float(losses.hits(config.output_activation, ws[f"Z{L}"], labels)))
        ws.drop(f"Z{L}")
        ws.put("dZ", dz)
        ws.put("cost", ws["cost"] + cost * (m / config.examples))
        return StepOutcome()
    # backward: gradients of this layer, then its update (the notes' "propagate backward, update")
    if layer == L:
        dz = ws["dZ"]
        ws.drop("dZ")
    else:
        dz = layers.hidden_dz(ws[f"dA{layer}"], ws[f"A{layer}"], config.activations[layer - 1])
        ws.drop(f"dA{layer}")
        ws.drop(f"A{layer}")
    a_prev = data.x(config, epoch, batch) if layer == 1 else ws[f"A{layer - 1}"]
    grads, da_prev = layers.backward(dz, a_prev, ws[f"W{layer}"], config.l2, m, need_da_prev=layer > 1)
    grads = {f"dW{layer}": grads["dW"], f"db{layer}": grads["db"]}
    state = {n: ws[n] for n in optimizers.state_names(config.optimizer, layer)}
    params = {f"W{layer}": ws[f"W{layer}"], f"b{layer}": ws[f"b{layer}"]}
    update_count = event.epoch * config.batches + event.batch + 1
    new_params, new_state = optimizers.update(
        config.optimizer, layer, params, grads, state, config.learning_rate, update_count
    )
    for name, value in {**new_params, **new_state}.items():
        ws.put(name, value)
    if da_prev is not None:
        ws.put(f"dA{layer - 1}", da_prev)
    if layer == 1 and event.batch == config.batches - 1:
        hit = float(ws["hits"][0]) / config.examples if config.validates else None
        return StepOutcome(epoch_cost=float(ws["cost"][0]), epoch_accuracy=hit)
    return StepOutcome()


PREDICT_CHUNK = 4096  # examples per forward pass: the activations of a large set never all exist at once


def predict(activations: tuple[str, ...] | list[str], params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class predictions (1, m) for column-layout inputs; each example's independent of the others,
    so they are computed a block of examples at a time."""
    count, m = len(activations), x.shape[1]
    out = np.empty((1, m), dtype=np.int64)
    for start in range(0, m, PREDICT_CHUNK):
        a = x[:, start : start + PREDICT_CHUNK]
        for layer in range(1, count + 1):
            w, b = params[f"W{layer}"], params[f"b{layer}"]
            a = layers.forward(a, w, b, activations[layer - 1], output=layer == count)
        out[:, start : start + PREDICT_CHUNK] = classes_of(activations, a)
    return out


def classes_of(activations: tuple[str, ...] | list[str], z: np.ndarray) -> np.ndarray:
    """The predicted class (1, m) from the output layer's pre-activation."""
    return losses.predicted_classes(activations[-1], z)


def evaluate(config: RunConfig, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(cost, accuracy) of the model on examples it does not train on (`evaluate_model`)."""
    return evaluate_model(config.activations, params, x, y)


def evaluate_model(
    activations: tuple[str, ...] | list[str], params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """(cost, accuracy) of the model on examples it does not train on: the cross-entropy (without the
    L2 term, which is the training objective's, not the data's) and the share classified right; a
    block of examples at a time, as `predict`."""
    count, m, total, right = len(activations), x.shape[1], 0.0, 0
    for start in range(0, m, PREDICT_CHUNK):
        a = x[:, start : start + PREDICT_CHUNK]
        labels = y[:, start : start + PREDICT_CHUNK]
        for layer in range(1, count + 1):
            w, b = params[f"W{layer}"], params[f"b{layer}"]
            a = layers.forward(a, w, b, activations[layer - 1], output=layer == count)
        cost, _ = losses.loss_and_gradient(activations[-1], a, labels)
        total += cost * a.shape[1]
        right += int(np.sum(classes_of(activations, a) == labels.astype(np.int64)))
    return total / m, right / m


def accuracy_of(
    activations: tuple[str, ...] | list[str], params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> float:
    """Share of the examples whose predicted class is their label."""
    return float(np.mean(predict(activations, params, x) == y.astype(np.int64)))


def accuracy(config: RunConfig, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return accuracy_of(config.activations, params, x, y)

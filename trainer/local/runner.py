"""A run's record, model and (when it failed) its cache state copied out of the local cloud before it
stops, and loaded back into a new one: what `python -m trainer train` keeps under lnn-runs/ and
`resume` restores. `stack` is anything with the run's adapters as `.services`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trainer import keys
from trainer.stores.items import public
from trainer.vocabulary import RunStatus

if TYPE_CHECKING:
    from trainer.services import Services


class Stack(Protocol):
    """Anything with the run's adapters: a cloud session, a test's stack."""

    @property
    def services(self) -> Services: ...


def export_run(stack: Stack, run_id: str, out_dir: Path) -> dict[str, Any]:
    """Copy the run's record, epochs and model out of the emulator before it stops."""
    run_dir = out_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    run = public(stack.services.run_store.get_run(run_id))
    epochs = [public(e) for e in sorted(stack.services.run_store.epochs(run_id), key=lambda e: e["epoch"])]
    record = {"run": run, "epochs": epochs}
    (run_dir / "run.json").write_text(json.dumps(record, indent=1, default=str))
    if run.get("status") == RunStatus.SUCCEEDED:
        model = stack.services.blob_store.get(keys.model_key(run_id))
        (run_dir / "model.npz").write_bytes(model)
        record["model_path"] = str(run_dir / "model.npz")
        (run_dir / "state.npz").unlink(missing_ok=True)
    elif run.get("status") == RunStatus.FAILED:
        # The cache dies with this process: keep the run's state so `resume` can restore it.
        cursor, config, tensors, data = stack.services.tensor_store.dump_run(run_id)
        if config is not None:
            arrays: dict[str, Any] = {"cursor": np.array(cursor), "config": np.array(config)}
            arrays |= {f"t_{k}": v for k, v in tensors.items()} | {f"d_{k}": v for k, v in data.items()}
            np.savez(run_dir / "state.npz", **arrays)
    return record


def restore_run(stack: Stack, run_dir: Path) -> str:
    """Load a run exported by `export_run` into this stack's emulator and cache."""
    record = json.loads((run_dir / "run.json").read_text())
    run = record["run"]
    run_id = run["run_id"]
    store = stack.services.run_store
    store.restore_run(run)
    # Every figure of each epoch (validation's too), never the table's own keys.
    store.put_epochs(run_id, [public(e) for e in record["epochs"]])
    state_path = run_dir / "state.npz"
    if state_path.is_file():
        with np.load(state_path, allow_pickle=False) as state:
            tensors = {k[2:]: state[k] for k in state.files if k.startswith("t_")}
            data = {k[2:]: state[k] for k in state.files if k.startswith("d_")}
            stack.services.tensor_store.put_data(run_id, data)
            stack.services.tensor_store.create_run(run_id, str(state["config"]), tensors, cursor=int(state["cursor"]))
    return run_id

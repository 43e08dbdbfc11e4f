"""Every name the system gives a stored object: the S3 keys of models, checkpoints and splits, and the
key families of a run's state in the cache. Spelled here once, so that the writer and every reader
(a resume, a sweep's end, the export of a run, the tests) agree by construction.

Keys are built only from validated run and sweep ids and from names the code chooses.
"""

from __future__ import annotations

from enum import StrEnum

# -- S3 -------------------------------------------------------------------------------------------
# Uploaded datasets live under this prefix of the stack's bucket, apart from models/ and checkpoints/.
DATASET_PREFIX = "datasets/"


def model_key(run_id: str) -> str:
    """The trained model of a run (and of a sweep's trial)."""
    return f"models/{run_id}/model.npz"


def best_model_key(sweep_id: str) -> str:
    """The copy of a sweep's best trial's model, made at the sweep's end."""
    return f"models/{sweep_id}/best.npz"


def split_key(sweep_id: str) -> str:
    """A sweep's validation split: the indices its trials hold out."""
    return f"sweeps/{sweep_id}/validation-split.npz"


def checkpoint_prefix(run_id: str) -> str:
    return f"checkpoints/{run_id}/"


def checkpoint_key(run_id: str, epoch: int) -> str:
    """Zero-padded, so the newest checkpoint is the greatest key (`checkpoint_epoch` reads it back)."""
    return f"{checkpoint_prefix(run_id)}epoch-{epoch:06d}.npz"


def checkpoint_epoch(key: str) -> int:
    return int(key.rsplit("epoch-", 1)[1].removesuffix(".npz"))


# -- the cache ------------------------------------------------------------------------------------
class CacheKind(StrEnum):
    """The families of a run's keys in the cache: `lnn:{RUN_ID}:KIND[:NAME]`."""

    CURSOR = "cursor"  # the last committed step
    CANCEL = "cancel"  # the cancel mark: never deleted by anyone, no commit passes it
    CONFIG = "config"  # the run's RunConfig as JSON
    TENSOR = "t"  # a parameter or optimizer slot (NAME: the tensor's name)
    DATA = "data"  # the read-only training data (NAME: x_train, y_train, ...)
    OUTBOX = "outbox"  # what the commit of a step left to do (NAME: the step's seq)
    HANDOFF = "handoff"  # the completion claim of a step, then its 'sent' mark (NAME: the seq)
    REDUCTION = "dp"  # a data-parallel run's reduction (trainer.stores.reduction_store)
    STOP = "stop"  # a data-parallel run's stop stream (`stop_key`): kept, as the cancel mark is


# The families `delete_run` removes while keeping the chain's bookkeeping until its TTL.
BULK_KINDS = (CacheKind.TENSOR, CacheKind.DATA, CacheKind.REDUCTION)


def cache_prefix(run_id: str) -> str:
    """Every key of a run starts so; the braces are a Redis hash tag, so a run's keys share one slot
    and a multi-key script stays valid on a clustered cache."""
    return f"lnn:{{{run_id}}}:"


def cache_key(run_id: str, kind: CacheKind, name: str = "") -> str:
    return f"{cache_prefix(run_id)}{kind.value}" + (f":{name}" if name else "")


def stop_key(run_id: str) -> str:
    """A stream a data-parallel run's workers read in every blocking wait: a cancel (and a worker
    that failed the run) appends to it, so a worker waiting for the others wakes and stops at once."""
    return cache_key(run_id, CacheKind.STOP)

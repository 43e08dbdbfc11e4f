"""A run's failure, as a chain step's copy or a data-parallel worker records it: the reason, the
move to FAILED fenced by the run's generation, and one FAILED message per chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trainer import once
from trainer.stores.records import RunItem
from trainer.stores.run_store import FAILURE_REASON
from trainer.stores.tensor_store import NO_CURSOR, UNAVAILABLE
from trainer.vocabulary import Notice

if TYPE_CHECKING:
    from trainer.ports import TensorStore
    from trainer.services import Services


def reason(exc: Exception, cache_lost: bool) -> str:
    """The failure as the run's item and its FAILED message give it, with what the user does next
    when the cache lost the run or did not answer."""
    said = f"{type(exc).__name__}: {exc}"
    if cache_lost:
        return f"cache lost: {said}; resume the run (from its newest checkpoint)"
    if isinstance(exc, UNAVAILABLE):
        return f"cache unavailable: {said}; resume the run once the cache answers again"
    return said


def cache_lost(tensor_store: TensorStore, run_id: str) -> bool:
    """Whether the cache lost the run (its cursor is gone), asked as a failure is recorded, to say
    what the user does next. Unreachable is not lost: the failure's own error says what happened."""
    try:
        return tensor_store.cursor(run_id) == NO_CURSOR
    except Exception:
        return False


def fail_run(
    svc: Services,
    run_id: str,
    exc: Exception,
    why: str,
    step: str,
    generation: int | None,
    token: str,
    deadline: once.Deadline,
    then: Callable[[], None] = lambda: None,
) -> RunItem | None:
    """FAILED with `why`, only while the run is still the chain (or the workers) of `generation`:
    a copy of the run before a resume fails nothing. `then` runs once the move is made (the other
    workers woken to stop). One FAILED message per chain (per resume), sent by the step whose
    failure won: a cache lost under a chain fails copies of two steps, and a run that Lambda's
    retry carried on after its message and that fails again before a resume is FAILED with the
    newer reason, saying nothing more. The run's item, or None when it had ended otherwise."""
    run = svc.run_store.mark_failed(run_id, why, step, type(exc).__name__, generation=generation)
    if run is None:
        return None
    then()
    if run.get("failed_step") == step:
        body = {"step": step, "error_type": type(exc).__name__, FAILURE_REASON: why}
        key = f"chain-{run.get('resumes', 0)}"
        once.publish_once(svc, Notice.FAILED, run_id, key, body, token, deadline)
    return run

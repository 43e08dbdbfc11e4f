"""Whether a parsed request may run: checked against its prepared data and the stack's settings.
One sequence for a run's launch and for each trial of a sweep, so both refuse the same things the
same way (the cache's capacity is checked by each caller: a run alone, a sweep's trials together)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer import request as request_mod
from trainer.parallel import admission as parallel

if TYPE_CHECKING:
    from trainer.data.loader import Dataset
    from trainer.settings import Settings


def problems(request: request_mod.TrainingRequest, dataset: Dataset | None, settings: Settings) -> list[str]:
    """Every problem of `request` against `dataset` (None: it could not be read, and its own problem
    is reported by the reader) and the settings: the network against the data and the trainer's
    memory, the run's ceilings (a data-parallel run's: trainer.parallel.admission), and the trainer's timeout."""
    found: list[str] = []
    if dataset is not None:
        found += request_mod.check_against_data(
            request, dataset.features, dataset.examples, dataset.classes, settings.memory_mb
        )
        found += parallel.problems(request, dataset.examples, settings)  # the ceilings, of a chain or of workers
    found += request_mod.check_against_trainer(request, settings.trainer_timeout_s)
    return found

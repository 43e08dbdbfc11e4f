"""One trainer execution environment in a process of its own, for its memory: it imports the trainer
handler, builds the adapters from the settings it is given, measures its resident memory (the
runtime's baseline), then handles the chain's events one after another, as a warm Lambda execution
environment does, and reports its peak resident memory and how long the first load of the data took.

    python -m tests.performance.trainer_env < spec.json     (spec: settings and the first events)
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from typing import Any

from tests.performance.measuring import rss_bytes


def main() -> int:
    spec = json.loads(sys.stdin.read())
    from tests.performance.inprocess import Context, Queue
    from trainer import services as services_mod
    from trainer.handlers import trainer as trainer_handler
    from trainer.settings import Settings

    invoker = Queue()
    svc = services_mod.build(Settings(**spec["settings"]), invoker)
    svc.tensor_store.client.ping()
    baseline = rss_bytes("VmRSS")

    get_data = svc.tensor_store.get_data
    loads: list[float] = []

    def timed_get_data(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return get_data(*args, **kwargs)
        finally:
            loads.append(time.perf_counter() - t)

    svc.tensor_store.get_data = timed_get_data
    queue: deque[dict[str, Any]] = deque(spec["events"])
    results = []
    started = time.perf_counter()
    while queue:
        results.append(trainer_handler.run(queue.popleft(), Context(), svc))
        queue.extend(invoker.queue)
        invoker.queue.clear()
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "baseline_rss": baseline,
                "peak_rss": rss_bytes("VmHWM"),
                "wall_s": wall,
                "data_loads_s": loads,
                "invocations": len(results),
                "final": results[-1] if results else None,
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One trainer execution environment in a process of its own, for its memory: it imports the trainer
handler, builds the adapters from the settings it is given, measures its resident memory (the
runtime's baseline), then handles the chain's events one after another, as a warm Lambda execution
environment does, and reports its peak resident memory and how long the first load of the data took.

    python -m tests.performance.trainer_env < spec.json     (spec: settings and the first events)
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections import deque
from typing import Any

from tests.performance.measuring import rss_bytes


class _Context:
    """What the handler reads of a Lambda context: a request id and the time left."""

    def __init__(self, timeout_ms: int = 900_000) -> None:
        self.aws_request_id = secrets.token_hex(8)
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> int:
    spec = json.loads(sys.stdin.read())
    from trainer import services as services_mod
    from trainer.handlers import trainer as trainer_handler
    from trainer.invoker import LocalInvoker
    from trainer.settings import Settings

    invoker = LocalInvoker()
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
        results.append(trainer_handler.run(queue.popleft(), _Context(), svc))
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

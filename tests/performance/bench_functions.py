"""The bench's handlers, copied into the bench's image task root as lnn_bench_functions.py beside
lnn_bench_measuring.py (tests/performance/measuring.py): the image itself never ships them. Each runs
a production handler (`run`, with the environment's own adapters) inside the bench's meter, in the
function's execution environment, and appends one JSON line per invocation to
$LNN_BENCH_LINES/<pid>.jsonl: the meter's figures, the invocation's CPU seconds and the environment's
resident memory; a data-parallel worker also appends a line per step it gathered to
$LNN_BENCH_LINES/steps-<pid>.jsonl, as it goes. The bench sums the lines of a run (tests/performance/cloud.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lnn_bench_measuring as measuring  # tests/performance/measuring.py, copied beside this module

_baseline_rss: int | None = None


def launch(event: Any, context: Any) -> Any:
    from trainer.handlers import launch as handler

    return _metered("launch", handler.run, event, context)


def trainer(event: Any, context: Any) -> Any:
    from trainer.handlers import trainer as handler

    return _metered("trainer", handler.run, event, context)


def _metered(role: str, run: Any, event: Any, context: Any) -> Any:
    from trainer import services

    global _baseline_rss
    svc = services.current()
    if _baseline_rss is None:
        # The runtime's own memory: handlers imported, adapters built and connected, no event yet.
        svc.tensor_store.client.ping()
        _baseline_rss = measuring.rss_bytes("VmRSS")
    line: dict[str, Any] = {"role": role, "pid": os.getpid(), "baseline_rss": _baseline_rss, "ok": False}
    line["run_id"] = event.get("run_id") if isinstance(event, dict) else None
    line["worker"] = event.get("worker") if isinstance(event, dict) else None  # a data-parallel worker's
    line["started"] = time.time()
    folder = Path(os.environ["LNN_BENCH_LINES"])
    stamps = folder / f"steps-{os.getpid()}.jsonl"  # a worker's steps, read by the bench while the run goes
    cpu, t = time.process_time(), time.perf_counter()
    with measuring.metered(svc.tensor_store, stamps, {"worker": line["worker"]}) as meter:
        try:
            result = run(event, context, svc)
            line.update(ok=True, result=result)
            if isinstance(result, dict) and result.get("run_id"):
                line["run_id"] = result["run_id"]  # the launch's answer names the run it started
            return result
        except Exception as exc:
            line["error"] = f"{type(exc).__name__}: {exc}"  # for the bench's message; Lambda gets it too
            raise
        finally:
            line.update(meter.as_dict())
            line.update(
                duration_s=time.perf_counter() - t,
                cpu_s=time.process_time() - cpu,
                ended=time.time(),
                peak_rss=measuring.rss_bytes("VmHWM"),
            )
            with open(folder / f"{os.getpid()}.jsonl", "a") as out:
                out.write(json.dumps(line, default=str) + "\n")

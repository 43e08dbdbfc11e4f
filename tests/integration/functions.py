"""Handlers for tests, copied into the test image's task root beside the trainer package (the image
itself never contains them): small ones for testing the local Lambda service, and the trainer's own
handler with faults injected at named points, for tests that crash a step where they choose."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path


def sleep(event, context):
    time.sleep(float(event.get("seconds", 0)))
    return {"pid": os.getpid(), "slept": event.get("seconds", 0), "tag": event.get("tag")}


_held: list[bytes] = []  # what `allocate` keeps resident


def allocate(event, context):
    """Makes `mib` MiB resident (every page written) and holds them for `hold_s` seconds."""
    _held.append(b"\x01" * (int(event["mib"]) << 20))
    time.sleep(float(event.get("hold_s", 0)))
    _held.clear()
    return {"pid": os.getpid(), "mib": event["mib"]}


def fail(event, context):
    raise RuntimeError(f"failing on purpose: {event.get('tag')}")


def describe(event, context):
    return {
        "pid": os.getpid(),
        "event": event,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory_mb": context.memory_limit_in_mb,
        "function_name": context.function_name,
        "greeting": os.environ.get("GREETING"),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "handler_faults": json.loads(_plan_text()),
        # As the process sees them: a forked environment's /proc/<pid>/environ is its fork server's.
        "environ": dict(os.environ),
        "sys_path": sys.path,
        "cwd": os.getcwd(),
        "argv": sys.argv,
    }


def blas(event, context):
    """The OpenBLAS kernel this environment runs (as OpenBLAS itself names it) and the bits of the
    cat benchmark's first-layer products under it: W1 (20 x 12288) by the training images
    (12288 x 209), forward, and the weight gradient back; and of numpy's exp and log."""
    import ctypes

    import numpy as np

    libs = sorted((Path(np.__file__).parents[1] / "numpy.libs").glob("libscipy_openblas*.so*"))
    corename = ctypes.CDLL(str(libs[0])).scipy_openblas_get_corename64_
    corename.restype = ctypes.c_char_p
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=(20, 12288)) * 0.01, rng.integers(0, 256, size=(12288, 209)) / 255.0
    z = w @ x
    dw = (np.maximum(z, 0) @ x.T) / 209
    logs = np.log(np.exp(rng.normal(size=4096)) + 1)
    digest = hashlib.sha256(z.tobytes() + dw.tobytes() + logs.tobytes()).hexdigest()[:16]
    return {"pid": os.getpid(), "kernel": corename().decode(), "bits": digest}


class InjectedFault(RuntimeError):
    """A crash a test causes on purpose."""


_installed_plan: str | None = None  # the plan the wrappers below were installed from
_wrapped: list[tuple[object, str, object]] = []  # (owner, name, original) of every wrapper installed
_event_key = ""  # the event being handled: its retries and copies share it


def _plan_text() -> str:
    """The function's fault plan: the one the local cloud keeps for it (POST /_lnn/handler-faults,
    trainer.local.handler_faults), read at each invocation, else its LNN_TEST_FAULTS variable."""
    folder = os.environ.get("LNN_HANDLER_FAULTS_DIR")
    if folder:
        try:
            return (Path(folder) / f"{os.environ['AWS_LAMBDA_FUNCTION_NAME']}.json").read_text()
        except FileNotFoundError:
            pass
    return os.environ.get("LNN_TEST_FAULTS") or "{}"


def trainer_with_faults(event, context):
    """The trainer's own handler, with faults raised at named points of its adapters and calls
    recorded, as the function's plan says (JSON: the cloud's plan for the function, read at each
    invocation, or else its LNN_TEST_FAULTS variable):
    {"dir": <folder both sides read>, "points": [{"target": "tensor_store.commit" | "trainer.engine:run_step",
    "before": bool, "after": bool, "probability": p, "seed": s, "skip": calls to let through first
    (in this environment), "limit": faults in all environments}], "record": [targets],
    "per_event": faults at most for one event, its retries and copies together}; a point with
    "pause_until": <file> pauses its call until that file exists instead of crashing (`limit` calls,
    1 by default, in all environments), one with "delay_s": [lo, hi] delays each call by a random
    time in that range (seeded per environment), one with "if_arg": i applies only when
    argument i is truthy, and one with "if_arg_is": [i, value] only when argument i is that value.
    Each fault appends a line to <dir>/injected, each recorded call one to <dir>/calls; a fault's
    slot is taken with an exclusive create, so `limit` holds across environments."""
    from trainer import services
    from trainer.handlers import trainer as trainer_handler

    svc = services.current()
    global _installed_plan, _event_key
    plan = _plan_text()
    if plan != _installed_plan:  # a new plan: the old wrappers go, in this warm environment too
        _uninstall()
        _install(svc, json.loads(plan))
        _installed_plan = plan
    _event_key = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:16]
    return trainer_handler.run(event, context, svc)


def _owner(svc, target: str):
    if ":" in target:
        module, name = target.split(":")
        return importlib.import_module(module), name
    adapter, name = target.split(".")
    return getattr(svc, adapter), name


def _install(svc, plan: dict) -> None:
    folder = Path(plan.get("dir", "."))
    for target in plan.get("record", []):
        owner, name = _owner(svc, target)
        original = getattr(owner, name)

        def recorded(*args, _original=original, _target=target, **kwargs):
            _note(folder, "calls", {"target": _target, "pid": os.getpid()})
            return _original(*args, **kwargs)

        _wrap(owner, name, recorded)
    for point in plan.get("points", []):
        owner, name = _owner(svc, point["target"])
        _wrap(owner, name, _FaultPoint(point, folder, plan.get("per_event"), getattr(owner, name)))


def _wrap(owner, name: str, wrapper) -> None:
    _wrapped.append((owner, name, getattr(owner, name)))
    setattr(owner, name, wrapper)


def _uninstall() -> None:
    """Every wrapper removed, the last installed first (a point may wrap a recorded call)."""
    while _wrapped:
        owner, name, original = _wrapped.pop()
        setattr(owner, name, original)


def _note(folder: Path, file: str, line: dict) -> None:
    with open(folder / file, "a") as out:
        out.write(json.dumps(line) + "\n")


def _ints(args: tuple) -> list[int]:
    """The call's integer arguments (a commit's positions, say), for the test to read back."""
    return [a for a in args if isinstance(a, int) and not isinstance(a, bool)]


class _FaultPoint:
    """One adapter or module function, wrapped as its point of the plan says."""

    def __init__(self, point: dict, folder: Path, per_event: int | None, original) -> None:
        self.point, self.folder, self.per_event, self.original = point, folder, per_event, original
        self.target = point["target"]
        self.rng = random.Random(f"{point.get('seed', 0)}:{os.getpid()}")
        self.calls = itertools.count(1)

    def __call__(self, *args, **kwargs):
        point = self.point
        armed = next(self.calls) > point.get("skip", 0)
        if "if_arg" in point and not (len(args) > point["if_arg"] and args[point["if_arg"]]):
            armed = False  # only the calls whose argument at that index is truthy
        if "if_arg_is" in point and not (
            len(args) > point["if_arg_is"][0] and args[point["if_arg_is"][0]] == point["if_arg_is"][1]
        ):
            armed = False  # only the calls whose argument at that index is that value
        if armed and "pause_until" in point:
            self.pause(args)
            return self.original(*args, **kwargs)
        if armed and "delay_s" in point:
            time.sleep(self.rng.uniform(*point["delay_s"]))  # a slower call, nothing else
            return self.original(*args, **kwargs)
        if armed and point.get("before", True):
            self.maybe("before", args)
        result = self.original(*args, **kwargs)
        if armed and point.get("after", False):
            self.maybe("after", args)  # the call's effect is applied: a crash after it
        return result

    def maybe(self, stage: str, args: tuple) -> None:
        if self.rng.random() >= self.point.get("probability", 1.0):
            return
        limit = self.point.get("limit")
        if limit is not None and not _take_slot(self.folder, self.target, limit):
            return
        if self.per_event is not None and not _take_slot(self.folder, f"event-{_event_key}", self.per_event):
            return
        _note(self.folder, "injected", {"target": self.target, "stage": stage, "ints": _ints(args), "pid": os.getpid()})
        raise InjectedFault(f"injected crash {stage} {self.target}")

    def pause(self, args: tuple) -> None:
        # A pause instead of a crash: the call waits (up to a minute) for the test's go file.
        if not _take_slot(self.folder, f"pause-{self.target}", self.point.get("limit", 1)):
            return
        _note(self.folder, "paused", {"target": self.target, "ints": _ints(args), "pid": os.getpid()})
        deadline = time.monotonic() + 60
        while not Path(self.point["pause_until"]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)


def _take_slot(folder: Path, target: str, limit: int) -> bool:
    for slot in range(limit):
        try:
            os.close(os.open(folder / f"slot-{target}-{slot}", os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            continue
    return False

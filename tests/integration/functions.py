"""Small handlers for testing the local Lambda service itself (copied into the test image's task root
beside the trainer package; the real functions are the trainer's handlers)."""

from __future__ import annotations

import os
import time


def sleep(event, context):
    time.sleep(float(event.get("seconds", 0)))
    return {"pid": os.getpid(), "slept": event.get("seconds", 0), "tag": event.get("tag")}


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
    }

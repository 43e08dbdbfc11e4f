"""The functions' entry points as the Lambda runtime calls them: a failed invocation answers its
caller with the error's type and message only.

awslambdaric would send the caller (a synchronous invoke's payload, an on-failure record) the
exception's stack trace, file paths of the image included. The trace goes to the function's log
instead, and the runtime is handed its FaultException, whose error document carries the type and
the message and no trace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from trainer.logs import get_logger

Handler = Callable[[Any, Any], Any]


def lambda_handler(service: str) -> Callable[[Handler], Handler]:
    logger = get_logger(service)

    def wrap(handle: Handler) -> Handler:
        @functools.wraps(handle)
        def handler(event: Any, context: Any) -> Any:
            try:
                return handle(event, context)
            except Exception as exc:
                from awslambdaric.lambda_runtime_exception import FaultException

                logger.exception(f"invocation failed: {type(exc).__name__}")  # the trace, in the log only
                raise FaultException(type(exc).__name__, str(exc)) from None

        return handler

    return wrap

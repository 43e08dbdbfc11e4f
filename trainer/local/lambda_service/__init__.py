"""The local Lambda service: Invoke executed for real, as AWS Lambda executes it.

Each execution environment is a process running the image's entry point, `python -m awslambdaric
<handler>`, against its own Runtime API server (trainer.local.runtime_api). What the function's
configuration says (as the control plane holds it: `FunctionConfig`) decides how it runs: the
environment variables, the timeout (the runtime's deadline, and the moment the environment is
killed), the memory size (reported to the runtime, and enforced: an environment whose resident
memory passes it is killed mid-invocation, as the kernel's OOM killer ends one on AWS), the handler
(ImageConfig.Command), the event invoke config (retries, maximum event age, on-failure
destination), the recursion config and the reserved concurrency.

One module per concern, as LocalStack lays out its Lambda provider:

- `service`: `LambdaService`, the Invoke API: RequestResponse answers with the handler's result or
  a function error (X-Amz-Function-Error); Event answers 202 at once;
- `errors`: the errors the Invoke API answers itself, one class per AWS error code;
- `config`: the function's configuration, the image's runtime, Lambda's limits;
- `environment`: one execution environment (process, Runtime API, timeout and memory enforced);
- `concurrency`: warm environments per function and the concurrency they may use (a `lease`);
- `events`: asynchronous events: the queue, retries, event age, recursion stops, destinations
  (`destinations`: the record's format; `recursion`: the trace header's hop count);
- `held`: held delivery, for tests that step a chain;
- `chaos`: duplicates, kills, delays and a mixed fleet, seeded (which fault system of the local
  cloud does what: trainer.local.faults);
- `stats`: what `/_lnn/stats` counts.
"""

from trainer.local.lambda_service.chaos import Chaos
from trainer.local.lambda_service.config import (
    ASYNC_PAYLOAD_LIMIT,
    DROPPED_VARIABLES,
    RECURSION_LIMIT,
    SYNC_PAYLOAD_LIMIT,
    FunctionConfig,
    FunctionNotFound,
    Runtime,
    function_variables,
    venv_runtime,
)
from trainer.local.lambda_service.environment import Attempt, ExecutionEnvironment
from trainer.local.lambda_service.errors import Answer, LambdaError
from trainer.local.lambda_service.events import AsyncEvent, AttemptEnd
from trainer.local.lambda_service.service import LambdaService
from trainer.local.lambda_service.stats import Stats

__all__ = [
    "ASYNC_PAYLOAD_LIMIT",
    "DROPPED_VARIABLES",
    "RECURSION_LIMIT",
    "SYNC_PAYLOAD_LIMIT",
    "Answer",
    "AsyncEvent",
    "Attempt",
    "AttemptEnd",
    "Chaos",
    "ExecutionEnvironment",
    "FunctionConfig",
    "FunctionNotFound",
    "LambdaError",
    "LambdaService",
    "Runtime",
    "Stats",
    "function_variables",
    "venv_runtime",
]

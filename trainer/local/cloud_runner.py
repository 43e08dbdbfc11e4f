"""Training on the local cloud, as a user trains on AWS: the stack provisioned through the AWS APIs,
the dataset uploaded to the stack's bucket, LaunchLambda invoked through the Lambda API, and the
chain run by the TrainerLambda in its own execution environments, handing off through the
production invoker (boto3 `lambda.invoke`, InvocationType=Event). This process only watches the
run in DynamoDB, and at the end copies the run's record and model out (runner.export_run).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import keys
from trainer import services as services_mod
from trainer.aws import client
from trainer.local.cloud import CloudProcess
from trainer.local.environment import aws_environment
from trainer.local.provision import provision_stack
from trainer.settings import Settings
from trainer.stores.records import RunItem
from trainer.vocabulary import RunStatus

POLL_S = 0.25


class LaunchRefused(ValueError):
    """LaunchLambda answered with a function error (a refused request): its message, verbatim."""


@dataclass
class CloudSession:
    cloud: CloudProcess | None  # None: the `make up` cloud, which outlives the session
    env: dict[str, str]  # what provision_stack returned: names of the stack's resources
    services: services_mod.Services  # this process's own adapters (reading the run, exporting it)

    def failure_records(self) -> list[dict[str, Any]]:
        """What reached the trainer's on-failure destination (events Lambda gave up on)."""
        sqs, records = client("sqs"), list[dict[str, Any]]()
        while True:
            messages = sqs.receive_message(QueueUrl=self.env["FAILURE_QUEUE_URL"], MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return records
            for message in messages:
                records.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.env["FAILURE_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])


def session_services(env: dict[str, str], ca_file: str) -> services_mod.Services:
    fn_env = client("lambda").get_function_configuration(FunctionName=env["TRAINER_FUNCTION_NAME"])["Environment"][
        "Variables"
    ]
    settings = Settings(
        table_name=env["TABLE_NAME"],
        model_bucket=env["MODEL_BUCKET"],
        sns_topic_arn=env["SNS_TOPIC_ARN"],
        trainer_function_arn=env["TRAINER_FUNCTION_ARN"],
        launch_function_arn=env["LAUNCH_FUNCTION_ARN"],
        redis_host=fn_env["REDIS_HOST"],
        redis_port=int(fn_env["REDIS_PORT"]),
        redis_user_id=fn_env["REDIS_USER_ID"],
        redis_replication_group_id=fn_env["REDIS_REPLICATION_GROUP_ID"],
        redis_tls=True,
        redis_ca_file=ca_file,
        memory_mb=int(fn_env.get("TRAINER_MEMORY_MB", "10240")),
        handoff_claim_ttl_s=30,
        region=os.environ.get("AWS_REGION") or "us-east-1",
    )
    return services_mod.build(settings)


@contextmanager
def cloud_session(
    cloud_args: tuple[str, ...] = (), log_path: Path | None = None, attach: bool = False
) -> Iterator[CloudSession]:
    """With `attach`, the `make up` cloud when it is up (it stays up); otherwise a local cloud child
    process with the stack provisioned in it, everything stopped at the end. Says which on stderr."""
    from trainer.local import up

    state = up.current() if attach else None
    if state is not None:
        print(f"(cloud: the `make up` cloud at {state['endpoint_url']})", file=sys.stderr)
        with aws_environment(up.access(state), up.REGION):
            env = state["stack"]
            services = session_services(env, str(up.STATE_DIR / "work" / "elasticache-ca.pem"))
            yield CloudSession(cloud=None, env=env, services=services)
        return
    if attach:
        print(
            "(cloud: a local cloud for this command, stopped at its end; `make up` keeps one running)", file=sys.stderr
        )
    with CloudProcess(args=cloud_args, log_path=log_path) as cloud, aws_environment(cloud.aws_env):
        env = provision_stack(
            f"lnn-{secrets.token_hex(3)}", trainer_memory_mb=int(os.environ.get("TRAINER_MEMORY_MB", "10240"))
        )
        services = session_services(env, str(Path(cloud.workdir) / "elasticache-ca.pem"))
        yield CloudSession(cloud=cloud, env=env, services=services)


def stage_dataset(session: CloudSession, payload: dict[str, Any]) -> dict[str, Any]:
    """A local dataset file goes to the stack's bucket (a function reads only s3:// or built-ins)."""
    source = payload.get("dataset")
    if not isinstance(source, str) or source.startswith("s3://") or not Path(source).is_file():
        return payload
    path = Path(source)
    key = f"{keys.DATASET_PREFIX}{path.name}"
    client("s3").put_object(Bucket=session.env["MODEL_BUCKET"], Key=key, Body=path.read_bytes())
    return {**payload, "dataset": f"s3://{session.env['MODEL_BUCKET']}/{key}"}


def invoke_launch(session: CloudSession, payload: dict[str, Any]) -> dict[str, Any]:
    """LaunchLambda through the Lambda API; a refused request raises LaunchRefused with its message."""
    resp = client("lambda").invoke(
        FunctionName=session.env["LAUNCH_FUNCTION_NAME"], Payload=json.dumps(payload).encode()
    )
    body = json.loads(resp["Payload"].read() or b"null")
    if resp.get("FunctionError"):
        message = body.get("errorMessage", json.dumps(body)) if isinstance(body, dict) else str(body)
        raise LaunchRefused(message)
    return body


def follow(
    session: CloudSession,
    run_id: str,
    on_progress: Callable[[RunItem], None] | None = None,
    cancel_requested: Callable[[], bool] | None = None,
    timeout_s: float = 24 * 3600,
) -> RunItem:
    """Watch the run item until the run leaves RUNNING; returns it."""
    store = session.services.run_store
    deadline = time.monotonic() + timeout_s
    cancelled = False
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run.get("status") != RunStatus.RUNNING:
            return run
        if on_progress:
            on_progress(run)
        if cancel_requested and not cancelled and cancel_requested():
            invoke_launch(session, {"action": "cancel", "run_id": run_id})
            cancelled = True
        time.sleep(POLL_S)
    raise TimeoutError(f"run {run_id} still RUNNING after {timeout_s:.0f} s")


def stop_at_next_step(session: CloudSession, timeout_s: float = 300) -> None:
    """Hold the trainer's next events and let the invocation in flight end: the run's cache state
    is then at rest, at a committed step, to be saved and resumed."""
    assert session.cloud is not None, "only a cloud of this session's own is stopped"
    session.cloud.hold(session.env["TRAINER_FUNCTION_NAME"])
    session.cloud.wait_idle(timeout_s)

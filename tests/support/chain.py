"""Stepping a run through the local cloud: LaunchLambda invoked through the Lambda API, the
TrainerLambda's hand-offs (the production invoker, boto3) held by the Lambda service and delivered
one at a time, or side by side, or dropped, as a test chooses; each delivery runs in the function's
own execution environment with Lambda's retries."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer import model_file
from trainer import services as services_mod
from trainer.aws import client
from trainer.data.loader import load_raw, prepare
from trainer.local.cloud import CloudProcess
from trainer.local.cloud_runner import LaunchRefused, session_services
from trainer.local.faults import FaultPlan
from trainer.local.lambda_service import Chaos
from trainer.local.provision import provision_stack
from trainer.local.waiting import pauses
from trainer.nn import monolithic
from trainer.nn.init import initialise

FAULTY_TRAINER = "lnn_test_functions.trainer_with_faults"


@dataclass
class Delivery:
    """How one held event ended: each copy's outcome ("ok" | "failed" | "discarded"), attempts and
    response (the handler's result, or its error document)."""

    request_id: str
    copies: list[dict[str, Any]]

    @property
    def attempts(self) -> int:
        return sum(c["attempts"] for c in self.copies)

    @property
    def failed(self) -> bool:
        return any(c["outcome"] == "failed" for c in self.copies)

    @property
    def errors(self) -> list[str]:
        return [
            f"{c['response'].get('errorType')}: {c['response'].get('errorMessage')}"
            for c in self.copies
            if c["outcome"] == "failed" and isinstance(c.get("response"), dict)
        ]


@dataclass
class ChainStack:
    """A stack provisioned in the local cloud whose trainer events are held for the test to deliver;
    `services` are this process's own adapters on the same resources (to read and arrange state)."""

    cloud: CloudProcess
    env: dict[str, str]
    services: services_mod.Services
    base_variables: dict[str, str] = field(default_factory=dict)
    timeout_s: int = 900

    @classmethod
    def provision(cls, cloud: CloudProcess, prefix: str, **variables: str) -> ChainStack:
        env = provision_stack(prefix, trainer_memory_mb=2048)
        services = session_services(env, str(Path(cloud.workdir) / "elasticache-ca.pem"))
        stack = cls(cloud, env, services)
        stack.base_variables = {**stack._variables(), **variables}
        stack.timeout_s = int(client("lambda").get_function_configuration(FunctionName=stack.trainer)["Timeout"])
        stack.configure()
        cloud.hold(env["TRAINER_FUNCTION_NAME"])
        return stack

    @property
    def trainer(self) -> str:
        return self.env["TRAINER_FUNCTION_NAME"]

    def _variables(self) -> dict[str, str]:
        config = client("lambda").get_function_configuration(FunctionName=self.trainer)
        return dict(config["Environment"]["Variables"])

    def configure(self, handler: str | None = None, **variables: str | None) -> None:
        """The trainer function's handler and variables (None removes one) on top of the stack's own;
        the service starts new environments for the new configuration, as Lambda does."""
        merged = {**self.base_variables, **variables}
        lam = client("lambda")
        lam.update_function_configuration(
            FunctionName=self.trainer,
            Environment={"Variables": {k: v for k, v in merged.items() if v is not None}},
            ImageConfig={"Command": [handler or "trainer.handlers.trainer.handler"]},
        )

    def faults(
        self, folder: Path, points: list[dict[str, Any]] = (), record: list[str] = (), per_event: int | None = None
    ) -> None:
        """Run the trainer's handler with faults at named points (tests/integration/functions.py)."""
        folder.mkdir(parents=True, exist_ok=True)
        plan = {"dir": str(folder), "points": list(points), "record": list(record), "per_event": per_event}
        self.configure(handler=FAULTY_TRAINER, LNN_TEST_FAULTS=json.dumps(plan))

    def calm(self) -> None:
        self.configure()

    def _configuration(self) -> tuple[str, dict[str, str], int]:
        config = client("lambda").get_function_configuration(FunctionName=self.trainer)
        command = (config.get("ImageConfig") or {}).get("Command") or ["trainer.handlers.trainer.handler"]
        return command[0], dict(config["Environment"]["Variables"]), int(config["Timeout"])

    def reset(self) -> None:
        """Calm for the next module: no chaos and no AWS faults in the cloud, nothing held, the
        failure queue drained, and the trainer's configuration the stack's own. Its warm
        environments stay warm unless that configuration has to change back (as on Lambda)."""
        self.cloud.set_chaos(Chaos())
        self.cloud.set_faults(FaultPlan())
        self.cloud.hold(self.trainer)
        self.drop_all()
        self.cloud.wait_idle()
        if self._configuration() != ("trainer.handlers.trainer.handler", self.base_variables, self.timeout_s):
            client("lambda").update_function_configuration(FunctionName=self.trainer, Timeout=self.timeout_s)
            self.configure()
        self.failure_records()

    def cold(self) -> None:
        """Retire every warm trainer environment (a configuration change does, as on Lambda): the
        next deliveries start cold, with nothing of any run in memory."""
        self.configure(LNN_COLD_START=secrets.token_hex(4))

    def launch(self, payload: Any) -> dict[str, Any]:
        """LaunchLambda through the Lambda API; a refused request raises LaunchRefused (its message)."""
        resp = client("lambda").invoke(
            FunctionName=self.env["LAUNCH_FUNCTION_NAME"], Payload=json.dumps(payload).encode()
        )
        body = json.loads(resp["Payload"].read() or b"null")
        if resp.get("FunctionError"):
            raise LaunchRefused(body.get("errorMessage", json.dumps(body)) if isinstance(body, dict) else str(body))
        return body

    def held(self) -> list[dict[str, Any]]:
        """The trainer events waiting, oldest first: request_id, payload, hop."""
        return self.cloud.held(self.trainer)

    def deliver(self, request_id: str | None = None, copies: int = 1, keep: bool = False) -> Delivery:
        """Deliver a held event (the oldest by default), `copies` times at once; with `keep` it stays
        held, to be delivered again (a late duplicate)."""
        if request_id is None:
            request_id = self.held()[0]["request_id"]
        answer = self.cloud.deliver(request_id, copies, keep)
        return Delivery(answer["request_id"], answer["copies"])

    def drop(self, request_id: str) -> None:
        self.cloud.drop(request_id)

    def drop_all(self) -> int:
        """Lose every held hand-off (nothing will deliver them)."""
        held = self.held()
        for event in held:
            self.drop(event["request_id"])
        return len(held)

    def failure_records(self) -> list[dict[str, Any]]:
        """What reached the trainer's on-failure destination, drained."""
        sqs, url, records = client("sqs"), self.env["FAILURE_QUEUE_URL"], []
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                records.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return records

    def remove(self) -> None:
        """Delete the functions (their environments stop) and the cache (its redis-server stops)."""
        lam = client("lambda")
        for name in (self.trainer, self.env["LAUNCH_FUNCTION_NAME"]):
            lam.delete_function(FunctionName=name)
        client("elasticache").delete_replication_group(ReplicationGroupId=self.env["REPLICATION_GROUP_ID"])


def new_stack(cloud: CloudProcess, **variables: str) -> ChainStack:
    return ChainStack.provision(cloud, "ch" + secrets.token_hex(3), **variables)


def footprint(stack: ChainStack) -> tuple[int, int, int, int]:
    """Cache keys, table items, bucket objects, and trainer events sent (held by the service):
    what a refused request must leave as it was. Completion claims of earlier runs are leases that
    expire on their own (1 s here): they would make the count move with the clock, and a refused
    request never writes one."""
    svc = stack.services
    keys = sum(1 for key in svc.tensor_store.client.scan_iter(count=5000) if b":handoff:" not in key)
    items = svc.run_store.db.scan(TableName=svc.run_store.table, Select="COUNT")["Count"]
    objects = svc.blob_store.s3.list_objects_v2(Bucket=svc.blob_store.bucket).get("KeyCount", 0)
    return keys, items, objects, len(stack.held())


def deliver_all(stack: ChainStack, limit: int | None = None) -> list[Delivery]:
    """Deliver held events oldest first until none is left (or `limit` were delivered)."""
    done: list[Delivery] = []
    while (limit is None or len(done) < limit) and (held := stack.held()):
        done.append(stack.deliver(held[0]["request_id"]))
    return done


def dead_letters(deliveries: list[Delivery]) -> list[str]:
    """The errors of the events Lambda gave up on (after its retries)."""
    return [error for d in deliveries if d.failed for error in d.errors]


def run_to_end(
    stack: ChainStack,
    payload: dict[str, Any],
    pick: Callable[[list], int] | None = None,
    copies: int = 1,
    max_deliveries: int = 20_000,
) -> tuple[str, int]:
    """Launch, then deliver held events (the one `pick` chooses, else the oldest; each `copies`
    times at once) until none is left. Returns (run_id, attempts: copies and retries included)."""
    stack.drop_all()
    run_id = stack.launch(payload)["run_id"]
    attempts = deliveries = 0
    while held := stack.held():
        event = held[pick(held) if pick else 0]
        delivery = stack.deliver(event["request_id"], copies)
        assert not delivery.failed, f"Lambda gave up on an event of {run_id}: {delivery.errors}"
        attempts += delivery.attempts
        deliveries += 1
        assert deliveries < max_deliveries, "the chain does not end"
    return run_id, attempts


def drain_queue(url: str) -> list[dict[str, Any]]:
    """The messages in the queue now, removed from it (a later drain sees only newer ones)."""
    sqs, messages = client("sqs"), []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            if messages:
                break
            time.sleep(0.2)
            continue
        messages += [json.loads(m["Body"]) for m in got]
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines the faulty trainer wrote (none yet: empty)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout_s
    waits = pauses()
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s:.0f} s")
        time.sleep(next(waits))
    return value


def final_params(stack: ChainStack, run_id: str) -> dict[str, np.ndarray]:
    blob = stack.services.blob_store.get(f"models/{run_id}/model.npz")
    _, params, _, _ = model_file.load(blob)
    return params


_REFERENCES: dict[str, dict[str, np.ndarray]] = {}


def reference_params(stack: ChainStack, payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """The weights `payload` ends with undisturbed: the run every disturbed twin is compared with.
    A calm run's weights are a function of its request alone (what the chain tests prove), so one
    calm run per request serves every test of the session that compares with it."""
    key = json.dumps(payload, sort_keys=True)
    if key not in _REFERENCES:
        run_id, _ = run_to_end(stack, payload)
        params = final_params(stack, run_id)
        for value in params.values():
            value.setflags(write=False)
        _REFERENCES[key] = params
    return _REFERENCES[key]


def same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """The same tensors, bit for bit."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def monolithic_reference(payload: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[float]]:
    dtype = payload.get("dtype", "float64")
    ds = prepare(load_raw(payload["dataset"]), payload.get("normalize", "auto"), dtype)
    n = len(payload["neurons"])
    sizes = [ds.features] + [payload["neurons"][f"layer{i}"] for i in range(1, n + 1)]
    params = initialise(sizes, payload.get("init", "scaled_normal"), payload.get("seed", 1), dtype)
    return monolithic.train(
        ds.x_train,
        ds.y_train,
        params,
        [payload["activations"][f"layer{i}"] for i in range(1, n + 1)],
        payload["epochs"],
        payload["learning_rate"],
        payload.get("optimizer", "gd"),
        payload.get("l2", 0.0),
        payload.get("batch_size"),
        payload.get("seed", 1),
    )

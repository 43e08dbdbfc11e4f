"""The Lambda image's contents, proven without Docker: its Python environment (built from
requirements.lock with Python 3.12, exactly as the Dockerfile's build stage does) runs the real
entry point, `python -m awslambdaric <handler>`, against a Lambda Runtime API served by the test,
with the test Redis and moto server behind it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import boto3
import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from tests.support.imageenv import LOCK_FILE, ImageEnv
from tests.support.requests import IMAGE_RUN

LAUNCH = "trainer.handlers.launch.handler"
TRAINER = "trainer.handlers.trainer.handler"
REQUEST = IMAGE_RUN
MIN_TEST_ACCURACY = 0.8  # the same threshold as tests/infra/terratest
MAX_STEPS = 500  # a bound on the driven chain; the plan of REQUEST is far shorter


def locked_requirements(python_version: str) -> dict[str, str]:
    """name -> version of every lock entry that applies to this Python."""
    pins: dict[str, str] = {}
    for logical in LOCK_FILE.read_text().replace("\\\n", " ").splitlines():
        line = logical.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        spec = line.split(" --hash", 1)[0].strip()
        req = Requirement(spec)
        if req.marker and not Marker(str(req.marker)).evaluate(
            {"python_full_version": python_version, "python_version": python_version.rsplit(".", 1)[0]}
        ):
            continue
        (specifier,) = list(req.specifier)
        pins[req.name.lower().replace("_", "-")] = specifier.version
    return pins


def test_image_environment_holds_exactly_the_locked_versions(image_env: ImageEnv) -> None:
    script = (
        "import json, importlib.metadata as m, sys; "
        "print(json.dumps({'python': sys.version.split()[0], "
        "'dists': {d.metadata['Name'].lower().replace('_','-'): d.version for d in m.distributions()}}))"
    )
    out = subprocess.run(
        [str(image_env.python), "-c", script],
        env=image_env.environ(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = json.loads(out.stdout)
    assert found["python"].startswith("3.12.")
    pins = locked_requirements(image_env.python_version)
    assert {"numpy", "scipy", "h5py", "redis", "boto3", "awslambdaric"} <= set(pins)
    assert {name: found["dists"].get(name) for name in pins} == pins
    # Nothing beyond the lock (the base interpreter contributes no packages).
    assert set(found["dists"]) == set(pins)
    total = image_env.deps_bytes + image_env.trainer_bytes
    print(f"\n[image] installed size: {total / 2**20:.1f} MiB (deps {image_env.deps_bytes / 2**20:.1f} MiB)")
    assert total < 10 * 2**30  # Lambda's image limit; what to keep small is cold start, reported below


def test_the_scientific_stack_imports_and_works_on_312(image_env: ImageEnv) -> None:
    script = (
        "import numpy as np, scipy.special as sp, h5py, redis, boto3, awslambdaric, msgspec; "
        "import aws_lambda_powertools; "
        "x = np.array([-1000.0, 0.0, 1000.0]); y = sp.expit(x); "
        "assert np.isfinite(y).all() and y[0] == 0.0 and y[2] == 1.0; "
        "assert np.isfinite(sp.log_softmax(np.array([1e4, 0.0]))).all(); "
        "print('ok', np.__version__, h5py.version.hdf5_version)"
    )
    out = subprocess.run(
        [str(image_env.python), "-c", script],
        env=image_env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


def dynamodb_run(env: dict[str, str], run_id: str) -> dict:
    db = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"])
    item = db.get_item(
        TableName=env["TABLE_NAME"],
        Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}},
        ConsistentRead=True,
    ).get("Item")
    assert item is not None, f"no run item for {run_id}"
    return item


def test_launch_then_trainer_steps_through_the_entry_point(start_function, lambda_stack) -> None:
    launch = start_function(LAUNCH, lambda_stack)
    launched = launch.invoke(REQUEST)
    assert launched.ok, f"launch failed: {launched.payload}\n{launch.output()}"
    run_id = launched.payload["run_id"]
    assert launched.payload["status"] == "RUNNING"
    assert dynamodb_run(lambda_stack, run_id)["status"]["S"] == "RUNNING"

    trainer = start_function(TRAINER, lambda_stack)
    event = {"state": "start", "run_id": run_id, "epoch": 0, "layer": 0, "batch": 0, "seq": 0}
    durations: list[float] = []
    steps = 0
    last = None
    for _ in range(MAX_STEPS):
        outcome = trainer.invoke(event)
        assert outcome.ok, f"trainer step failed on {event}: {outcome.payload}\n{trainer.output()}"
        last = outcome.payload
        assert last["run_id"] == run_id and last["status"] in ("RUNNING", "SUCCEEDED"), last
        durations.append(outcome.duration_s)
        steps += int(last["steps_executed"])
        if last["next_event"] is None:
            break
        event = last["next_event"]  # what the asynchronous self-invocation carried (moto ran nothing)
    else:
        pytest.fail(f"the chain did not finish within {MAX_STEPS} invocations")
    assert last is not None and last["status"] == "SUCCEEDED", last
    assert steps == launched.payload["total_steps"]

    # Mirrors tests/infra/terratest: the run item reached SUCCEEDED and carries the test accuracy.
    item = dynamodb_run(lambda_stack, run_id)
    assert item["status"]["S"] == "SUCCEEDED"
    accuracy = float(item["test_accuracy"]["N"])
    assert MIN_TEST_ACCURACY <= accuracy <= 1.0, f"moons should train well past chance: {accuracy}"

    warm = durations[1:]
    print(
        f"\n[image] cold start (process start -> first poll): launch {launch.cold_start_s:.2f} s, "
        f"trainer {trainer.cold_start_s:.2f} s; first trainer invocation {durations[0] * 1000:.0f} ms; "
        f"warm invocations ({len(warm)}): median {statistics.median(warm) * 1000:.1f} ms, "
        f"max {max(warm) * 1000:.1f} ms; test accuracy {accuracy:.3f}"
    )


def test_a_bad_request_comes_back_as_a_function_error(start_function, lambda_stack) -> None:
    launch = start_function(LAUNCH, lambda_stack)
    bad = {"dataset": "moons", "neurons": {"layer1": -3}, "activations": {"layer1": "tanhh"}, "epochs": 0}
    outcome = launch.invoke(bad)
    assert not outcome.ok  # posted to /invocation/{id}/error: a function error, as `lambda invoke` shows it
    message = outcome.payload["errorMessage"]
    assert "invalid training request" in message
    assert message.count("\n  - ") >= 2, f"every problem should be listed: {message}"
    assert outcome.payload["errorType"] == "RequestError"
    # The execution environment survives a function error and serves the next event.
    again = launch.invoke({"not": "a request"})
    assert not again.ok and "invalid training request" in again.payload["errorMessage"]
    assert launch.process.poll() is None


def test_a_missing_handler_is_an_init_error(start_function, lambda_stack) -> None:
    broken = start_function("trainer.handlers.nope.handler", lambda_stack, wait_ready=False)
    assert broken.api.init_error_event.wait(120), broken.output()
    error = broken.api.init_errors[0]
    assert error["error_type"] and "nope" in json.dumps(error["body"])
    deadline = time.monotonic() + 30
    while broken.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert broken.process.returncode not in (None, 0)

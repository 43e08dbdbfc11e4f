"""The runs the bench times: LNN's monolithic numpy trainer (in this process), the chain (per_step or
fused) on the local cloud (tests/performance/cloud.py: its functions in execution environments of the
image's Python 3.12 environment, metered inside them; for its memory, on trainer environments started
for the run), PyTorch in its own virtual environment, and the import of the handlers in the image's
environment.

What a row's wall time includes: from the request to the trained model. Monolithic: dataset load,
normalisation, initialisation, training, accuracy. Chain: from the LaunchLambda invoke (Lambda API)
until the Lambda service is idle again: the launch (validation, dataset read from S3, normalisation,
initialisation, writes to Redis and DynamoDB) and every trainer invocation in its warm execution
environment (data load from Redis, steps, commits, hand-offs through the Lambda API, per-epoch
history and heartbeats in DynamoDB, finish: accuracy, model to S3, SNS). PyTorch: reading the
normalised data and initial weights from raw files, training, accuracy (not the import of torch).
Excluded: starting the local cloud, provisioning the stack, uploading the dataset to S3, and starting
the execution environments (a warm-up run starts them; reported apart, beside the cold start).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.performance import measuring
from trainer import engine
from trainer.data.loader import load_raw, prepare
from trainer.nn import batches, monolithic
from trainer.nn.init import initialise
from trainer.request import TrainingRequest

if TYPE_CHECKING:
    from tests.performance.cloud import BenchCloud

REPO_ROOT = Path(__file__).resolve().parents[2]
TORCH_VENV = REPO_ROOT / ".venv-torch"
WALL_TIME_INCLUDES = __doc__.split("What a row's wall time includes: ", 1)[1].split("\n\n")[0].replace("\n", " ")


def training_request(dataset: str, network: dict[str, Any], epochs: int, dtype: str, **extra: Any) -> TrainingRequest:
    """The request a user would send for this run: the package's own reading of the network."""
    return TrainingRequest(dataset=dataset, **network, epochs=epochs, dtype=dtype, **extra)


def run_monolithic(dataset: str, network: dict[str, Any], epochs: int, dtype: str) -> dict[str, Any]:
    request = training_request(dataset, network, epochs, dtype)
    activations = request.activation_list()
    t, cpu = time.perf_counter(), measuring.cpu_s()
    ds = prepare(load_raw(dataset), request.normalize, dtype)
    params = initialise([ds.features, *request.neuron_list()], request.init, request.seed, dtype)
    # The trainer keeps the examples-major layout the launch writes (engine.TrainData); so does this.
    x_train = np.asfortranarray(ds.x_train)
    t_train = time.perf_counter()
    params, costs = monolithic.train(
        x_train,
        ds.y_train,
        params,
        activations,
        epochs,
        request.learning_rate,
        request.optimizer,
        request.l2,
        request.batch_size,
        request.seed,
    )
    train_s = time.perf_counter() - t_train
    test_acc = engine.accuracy_of(activations, params, ds.x_test, ds.y_test)
    wall, cpu = time.perf_counter() - t, measuring.cpu_s() - cpu
    return {
        "mode": "monolithic",
        "dtype": dtype,
        "epochs": epochs,
        "wall_s": wall,
        "cpu_s": cpu,
        "train_s": train_s,
        "costs": costs,
        "final_cost": costs[-1],
        "test_accuracy": test_acc,
        "train_accuracy": engine.accuracy_of(activations, params, x_train, ds.y_train),
    }


def run_chain(
    stack: BenchCloud, dataset: str, network: dict[str, Any], epochs: int, dtype: str, chain: str, **request: Any
) -> dict[str, Any]:
    """The chain on the local cloud (tests/performance/cloud.py): LaunchLambda through the Lambda
    API, the trainer in its warm execution environments, each invocation metered inside them."""
    payload = {"dataset": dataset, **network, "epochs": epochs, "dtype": dtype, "chain": chain, **request}
    run = stack.run(payload)
    meter = run.meter
    history = sorted(stack.services.run_store.epochs(run.run_id), key=lambda e: e["epoch"])
    bytes_ = measuring.handoff_bytes(meter.log)
    metrics = run.final["metrics"]
    return {
        "mode": chain,
        "dtype": dtype,
        "epochs": epochs,
        "wall_s": run.wall_s,
        "cpu_s": sum(line["cpu_s"] for line in run.lines),
        "launch_s": run.launch_s,
        "servers_cpu_s": run.servers_cpu_s,
        "env_starts": run.service["environments_started"],
        "env_start_s": run.env_start_s,
        "run_id": run.run_id,
        "costs": [float(e["cost"]) for e in history],
        "final_cost": float(metrics["final_cost"]),
        "test_accuracy": float(metrics["test_accuracy"]),
        "train_accuracy": float(metrics["train_accuracy"]),
        "invocations": len(run.trainer_lines),  # the launch's start event + every hand-off
        "compute_s": meter.compute_s,
        "redis_s": meter.redis_s,
        "round_trips": meter.round_trips,
        "aws_calls": meter.aws_calls,
        "aws_calls_by_operation": dict(meter.aws_operations),
        "aws_s": meter.aws_s,
        "data_bytes": meter.data_bytes,
        "data_load_s": meter.data_load_s,
        "state_bytes": meter.state_bytes,
        "handoff_overhead_ratio": bytes_["moved"] / max(1, bytes_["needed"]),
        "handoff_bytes": bytes_["moved"],
        "handoff_needed_bytes": bytes_["needed"],
        "epoch_durations_s": [float(e["duration_s"]) for e in history],
    }


def run_chain_in_own_environment(
    stack: BenchCloud, dataset: str, network: dict[str, Any], epochs: int, dtype: str
) -> dict[str, Any]:
    """The fused chain on trainer environments started for it (and warmed with a small run), so that
    their peak resident memory is this run's: a warm environment would still hold earlier runs' data."""
    startup = stack.fresh_environments()
    payload = {"dataset": dataset, **network, "epochs": epochs, "dtype": dtype, "chain": "fused"}
    run = stack.run(payload)
    trainer = run.trainer_lines
    peak = max(trainer, key=lambda line: line["peak_rss"])  # the environment that held most
    loads = [line for line in trainer if line["data_loads"]]
    ds = load_raw(dataset)
    return {
        "run_id": run.run_id,
        "launch_s": run.launch_s,
        "first_load_s": loads[0]["data_load_s"] if loads else 0.0,
        "data_loads": sum(line["data_loads"] for line in trainer),
        "environments": len({line["pid"] for line in trainer}),
        "env_start_s": startup["mean"],
        "env_starts_in_run": run.service["environments_started"],
        "wall_s": run.wall_s,
        "invocations": len(trainer),
        "baseline_rss": peak["baseline_rss"],
        "peak_rss": peak["peak_rss"],
        "final_cost": float(run.final["metrics"]["final_cost"]),
        "test_accuracy": float(run.final["metrics"]["test_accuracy"]),
        "examples": int(np.asarray(ds["train_set_x"]).shape[0]),
    }


def model_bytes(features: int, network: dict[str, Any], examples: int, test_examples: int, dtype: str) -> dict:
    """Training data in the run's dtype, parameters and optimizer state: what a trainer must hold."""
    request = training_request("x", network, 1, dtype)
    sizes = [features, *request.neuron_list()]
    itemsize = np.dtype(dtype).itemsize
    params = sum(sizes[i] * sizes[i - 1] + sizes[i] for i in range(1, len(sizes)))
    slots = {"gd": 0, "momentum": 1, "adam": 2}[request.optimizer]
    data = (features + 1) * (examples + test_examples) * itemsize + 2 * features * 8
    return {"data": data, "params": params * itemsize, "optimizer_state": slots * params * itemsize}


# -- PyTorch ----------------------------------------------------------------------------------------
def torch_python() -> Path | None:
    python = TORCH_VENV / "bin" / "python"
    return python if python.exists() else None


def run_torch(
    dataset: str, network: dict[str, Any], epochs: int, dtype: str, threads: int, workdir: Path, breakdown: bool = False
) -> dict:
    """The same run in PyTorch (tests/performance/torch_train.py in .venv-torch); with `breakdown`,
    also the first layer's two products timed on their own."""
    python = torch_python()
    if python is None:
        raise RuntimeError(
            f"{TORCH_VENV} is absent: make it with `python3 -m venv .venv-torch && "
            ".venv-torch/bin/pip install torch==2.13.0`"
        )
    request = training_request(dataset, network, epochs, dtype)
    ds = prepare(load_raw(dataset), request.normalize, dtype)
    sizes = [ds.features, *request.neuron_list()]
    params = initialise(sizes, request.init, request.seed, dtype)
    m = ds.examples
    batch = min(request.batch_size or m, m)
    folder = workdir / f"torch-{Path(dataset).stem}-{dtype}"
    folder.mkdir(parents=True, exist_ok=True)
    ds.x_train.T.astype(dtype).tofile(folder / "x_train.bin")  # examples-major rows
    ds.x_test.T.astype(dtype).tofile(folder / "x_test.bin")
    ds.y_train.reshape(-1).astype(np.int64).tofile(folder / "y_train.bin")
    ds.y_test.reshape(-1).astype(np.int64).tofile(folder / "y_test.bin")
    for i in range(1, len(sizes)):
        params[f"W{i}"].tofile(folder / f"W{i}.bin")
        params[f"b{i}"].reshape(-1).tofile(folder / f"b{i}.bin")
    if batch < m:  # LNN's batches, epoch by epoch
        np.stack([batches.epoch_permutation(request.seed, e, m) for e in range(epochs)]).astype(np.int64).tofile(
            folder / "order.bin"
        )
    spec = {
        "threads": threads,
        "dtype": dtype,
        "features": ds.features,
        "examples": m,
        "test_examples": int(ds.x_test.shape[1]),
        "neurons": request.neuron_list(),
        "activations": request.activation_list(),
        "optimizer": request.optimizer,
        "learning_rate": request.learning_rate,
        "epochs": epochs,
        "batch_size": batch,
        "breakdown": breakdown,
    }
    if set(spec["activations"][:-1]) != {"relu"} or request.optimizer not in ("gd", "adam"):
        raise ValueError("the PyTorch row covers relu hidden layers with gd or adam")
    (folder / "run.json").write_text(json.dumps(spec))
    threads_env = {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name("torch_train.py")), str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, **threads_env},
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the PyTorch run failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mode": "pytorch", "dtype": dtype, "epochs": epochs, **out}


# -- cold start ---------------------------------------------------------------------------------------
HANDLERS = ("trainer.handlers.launch", "trainer.handlers.trainer")


def cold_start(repeats: int = 7) -> dict[str, Any]:
    """`python -X importtime -c 'import <both handlers>'` in the image's environment (Python 3.12,
    requirements.lock only, /var/task laid out and compiled as the Dockerfile does); the best of
    `repeats`, file cache warm. Seven: on a shared two-core machine one import in three or so is
    slowed by a neighbour by a quarter or more (0.41-0.51 s as the best of three, for the same code)."""
    from tests.support import imageenv

    image = imageenv.build()
    try:
        best: dict[str, Any] | None = None
        for _ in range(repeats):
            t = time.perf_counter()
            done = subprocess.run(
                [str(image.python), "-X", "importtime", "-c", "import " + ", ".join(HANDLERS)],
                capture_output=True,
                text=True,
                env=image.environ(),
                cwd=image.task_root,
                timeout=120,
                check=False,
            )
            process_s = time.perf_counter() - t
            if done.returncode != 0:
                raise RuntimeError(f"importing the handlers in the image environment failed:\n{done.stderr[-3000:]}")
            parsed = measuring.parse_importtime(done.stderr)
            parsed["process_s"] = process_s
            parsed["packages"] = measuring.importtime_by_package(done.stderr)
            if best is None or parsed["total_s"] < best["total_s"]:
                best = parsed
        assert best is not None
        best["python"] = image.python_version
        best["repeats"] = repeats
        return best
    finally:
        shutil.rmtree(image.root, ignore_errors=True)


# -- cost --------------------------------------------------------------------------------------------
# Published on-demand prices, us-east-1, x86_64 (aws.amazon.com/lambda/pricing, /dynamodb/pricing,
# /sns/pricing, /s3/pricing), without free tiers.
PRICES = {
    "lambda_gb_s": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "dynamodb_write_request_unit": 0.625 / 1e6,
    "dynamodb_read_request_unit": 0.125 / 1e6,
    "sns_publish": 0.50 / 1e6,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
}
LAUNCH_MEMORY_MB = 1024  # terraform: launch_memory_size default
TRAINER_MEMORY_MB = 2048  # terraform: trainer_memory_size default
_DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
_DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}
_S3_PUTS = {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}


def cost_per_run(row: dict[str, Any], launch_s: float) -> dict[str, Any]:
    """Dollars of one run from the modelled Lambda time and the AWS calls the run made (one request
    unit per DynamoDB call: every item LNN writes is under 1 KB)."""
    ops: Counter[str] = Counter(row.get("aws_calls_by_operation", {}))
    trainer_s = max(0.0, row["modelled_lambda_s"] - launch_s)
    gb_s = launch_s * LAUNCH_MEMORY_MB / 1024 + trainer_s * TRAINER_MEMORY_MB / 1024
    requests = row["invocations"] + 1  # every trainer invocation and the launch
    parts = {
        "lambda_compute": gb_s * PRICES["lambda_gb_s"],
        "lambda_requests": requests * PRICES["lambda_request"],
        "dynamodb": sum(n for op, n in ops.items() if op.split(":")[1] in _DYNAMODB_WRITES)
        * PRICES["dynamodb_write_request_unit"]
        + sum(n for op, n in ops.items() if op.split(":")[1] in _DYNAMODB_READS) * PRICES["dynamodb_read_request_unit"],
        "sns": sum(n for op, n in ops.items() if op == "sns:Publish") * PRICES["sns_publish"],
        "s3": sum(n for op, n in ops.items() if op.startswith("s3:") and op.split(":")[1] in _S3_PUTS)
        * PRICES["s3_put"]
        + sum(n for op, n in ops.items() if op in ("s3:GetObject", "s3:HeadObject")) * PRICES["s3_get"],
    }
    return {"gb_s": gb_s, "requests": requests, "operations": dict(ops), **parts, "total": sum(parts.values())}

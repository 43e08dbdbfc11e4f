"""The bench's local cloud: the chain runs as it runs on AWS. LaunchLambda is invoked through the
Lambda API; the TrainerLambda runs in its own execution environments (`python -m awslambdaric`
processes of the local cloud's Lambda service) and hands off through the production invoker.

The environments run the image's Python environment (Python 3.12, requirements.lock only, laid out
by tests/support/imageenv.py as the Dockerfile lays it out), as the integration tests do; the
bench's own process (the monolithic trainer, the report) runs the project's virtual environment.

Both functions run the bench's handlers (bench_functions.py, copied with measuring.py into the
image's task root for the bench only), which meter each invocation inside its environment and write
a JSON line the bench sums. A run's wall time runs from the launch invoke to the Lambda service
being idle again (`/_lnn/idle`, polled every POLL_S): nothing queued and nothing in flight, so the
last trainer invocation has returned. Every timed run starts on warm environments (a warm-up run
starts them); their start-up is measured by the Lambda service and reported apart.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.performance import measuring
from trainer import services as services_mod
from trainer.aws import client
from trainer.local.cloud_runner import CloudSession, cloud_session, invoke_launch, stage_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.01  # the resolution of a run's end; one /_lnn/idle request costs about a millisecond
HANDLERS = {"launch": "lnn_bench_functions.launch", "trainer": "lnn_bench_functions.trainer"}
WARM_UP = {  # a few hand-offs, so that the trainer's environments are warm for the runs the bench times
    "dataset": "moons",
    "neurons": {"layer1": 4, "layer2": 1},
    "activations": {"layer1": "relu", "layer2": "sigmoid"},
    "epochs": 1,
    "learning_rate": 0.01,
    "batch_size": 128,
    "chain": "per_step",
}


@dataclass
class ChainRun:
    """One run on the local cloud: its invocations' lines (launch first, then the trainer's, in the
    order they started) and the Lambda service's counters over the run."""

    run_id: str
    launch_s: float
    wall_s: float
    lines: list[dict[str, Any]]
    service: dict[str, Any]
    servers_cpu_s: float = 0.0  # CPU the local cloud's process and redis-servers used during the run

    @property
    def trainer_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["role"] == "trainer"]

    @property
    def meter(self) -> measuring.Meter:
        return measuring.Meter.total(self.lines)

    @property
    def final(self) -> dict[str, Any]:
        """What the invocation that finished the run returned: the chain's last one, or the data-parallel
        worker that committed the finish (its workers' last invocations end in any order)."""
        trainer = self.trainer_lines
        done = [line for line in trainer if (line.get("result") or {}).get("status") == "SUCCEEDED"]
        return ((done or trainer)[-1].get("result") or {}) if trainer else {}

    @property
    def env_start_s(self) -> float:
        """Start-up of the environments that started during the run (none, when the warm ones served it)."""
        starts = self.service["environment_start_s"]
        return (starts["mean"] or 0.0) * starts["count"]


@dataclass
class BenchCloud:
    session: CloudSession
    lines: Path  # where the environments write their lines
    threads: int  # BLAS threads of the functions' environments: the bench's own count
    python: str  # the environments' Python version
    staged: dict[str, str] = field(default_factory=dict)
    startup: dict[str, Any] = field(default_factory=dict)  # the Lambda service's figures of the warm-up

    @property
    def services(self) -> services_mod.Services:
        """This process's own adapters on the stack's resources (the run history, the tests' checks)."""
        return self.session.services

    def configure(self, **variables: str) -> None:
        """The bench's handlers, where they write, the BLAS threads, and `variables` on top of the
        stack's own environment; the Lambda service starts new environments for a changed one."""
        lam = client("lambda")
        for kind, handler in HANDLERS.items():
            name = self.session.env[f"{kind.upper()}_FUNCTION_NAME"]
            current = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
            blas = {var: str(self.threads) for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            lam.update_function_configuration(
                FunctionName=name,
                Environment={"Variables": {**current, **blas, "LNN_BENCH_LINES": str(self.lines), **variables}},
                ImageConfig={"Command": [handler]},
            )

    def stage(self, dataset: str) -> str:
        """A local file goes to the stack's bucket once, before any run is timed (a function reads
        only s3:// or built-in datasets)."""
        if dataset not in self.staged:
            self.staged[dataset] = stage_dataset(self.session, {"dataset": dataset})["dataset"]
        return self.staged[dataset]

    def run(
        self, payload: dict[str, Any], timeout_s: float = 7200, during: Callable[[str], None] | None = None
    ) -> ChainRun:
        """One run, timed from the launch invoke until the Lambda service is idle; `during(run_id)` is
        called at every poll while it goes (the parallel section kills a worker from there). A data-parallel
        run's workers leave their steps' stamps (`stamps`)."""
        payload = {**payload, "dataset": self.stage(payload["dataset"])}
        for old in self.lines.glob("*.jsonl"):
            old.unlink()
        cloud = self.session.cloud
        cloud.reset_stats()
        servers = servers_of(cloud.process.pid)
        servers_cpu = cpu_s(servers)
        started = time.perf_counter()
        launched = invoke_launch(self.session, payload)
        launch_s = time.perf_counter() - started
        deadline = time.monotonic() + timeout_s
        while not cloud.idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {launched['run_id']} still running after {timeout_s:.0f} s")
            if during is not None:
                during(launched["run_id"])
            time.sleep(POLL_S)
        wall_s = time.perf_counter() - started
        servers_cpu = cpu_s(servers) - servers_cpu
        run_id = launched["run_id"]
        lines = [
            line
            for path in self.lines.glob("[0-9]*.jsonl")  # <pid>.jsonl: one line per invocation
            for line in map(json.loads, path.read_text().splitlines())
            if line["run_id"] == run_id
        ]
        lines.sort(key=lambda line: (line["role"] != "launch", line["started"]))
        run = ChainRun(run_id, launch_s, wall_s, lines, cloud.stats(), servers_cpu)
        failed = [line for line in run.trainer_lines if not line["ok"]]
        if failed or run.final.get("status") != "SUCCEEDED":
            errors = [line.get("error") for line in failed]
            raise RuntimeError(
                f"run {run_id} ended {run.final.get('status')}; {len(failed)} failed invocations {errors[:3]}; "
                f"the environments' logs are under {cloud.workdir}/logs"
            )
        return run

    def stamps(self, run_id: str) -> list[dict[str, Any]]:
        """The steps the run's data-parallel workers have gathered so far: {worker, step, t, pid}, in
        time order (tests/performance/bench_functions.py writes them as the steps end)."""
        found = []
        for path in self.lines.glob("steps-*.jsonl"):
            for text in path.read_text().splitlines():
                with contextlib.suppress(ValueError):  # a line being written
                    line = json.loads(text)
                    if line["run_id"] == run_id:
                        found.append(line)
        return sorted(found, key=lambda line: line["t"])

    def fresh_environments(self) -> dict[str, Any]:
        """New trainer environments, warmed up with a small run, for a run whose memory is measured:
        a warm one would still hold the earlier runs' data. Returns the start-up figures."""
        self.configure(LNN_BENCH_GENERATION=secrets.token_hex(4))
        return self.warm_up()

    def warm_up(self) -> dict[str, Any]:
        return self.run(WARM_UP).service["environment_start_s"]


def servers_of(cloud_pid: int) -> list[psutil.Process]:
    """The local cloud's own process and its redis-servers: what a run's functions talk to at each
    hand-off, and what shares the machine's cores with them (the execution environments are not
    among them: their CPU is the run's own work, metered inside them)."""
    cloud = psutil.Process(cloud_pid)
    found = [cloud]
    for child in cloud.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.name() == "redis-server":
                found.append(child)
    return found


def cpu_s(processes: list[psutil.Process]) -> float:
    """CPU seconds (user + system) the processes have used so far; one that is gone counts 0."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def image_environment() -> Any:
    from tests.support import imageenv

    return imageenv.build()


@contextmanager
def bench_cloud(threads: int, log_path: Path | None = None) -> Iterator[BenchCloud]:
    """The image's environment with the bench's handlers in its task root, a local cloud running
    it, the stack provisioned and its environments warm; everything stops at the end."""
    image = image_environment()
    here = Path(__file__).parent
    # Only in the bench's copy of the image: the production image never ships them.
    shutil.copy(here / "bench_functions.py", image.task_root / "lnn_bench_functions.py")
    shutil.copy(here / "measuring.py", image.task_root / "lnn_bench_measuring.py")
    lines = Path(tempfile.mkdtemp(prefix="lnn-bench-lines-"))
    args = ("--image-root", str(image.root), "--python", str(image.python), "--allow-handler", "lnn_bench_functions.*")
    try:
        with cloud_session(args, log_path) as session:
            bench = BenchCloud(session, lines, threads, image.python_version)
            bench.configure()
            bench.startup = bench.warm_up()
            yield bench
    finally:
        shutil.rmtree(lines, ignore_errors=True)
        shutil.rmtree(image.root, ignore_errors=True)

"""What the functions' BLAS pin costs on this machine: the cat benchmark's epochs (plain numpy,
trainer.nn.monolithic, the network and learning rate of workloads.CAT_NETWORK) timed with the
kernels OpenBLAS and numpy pick for this CPU and with the pin the functions set
(trainer.local.fleet.PINNED_X86_64), and with its kernel alone (numpy's own loops keep AVX-512), each
in its own process, alternated, the best of the repeats.

    .venv/bin/python -m tests.performance.pin_cost [--epochs 300] [--repeats 5] [--threads 1 2]

It prints, per thread count, the milliseconds per epoch of each (wall clock, and the process's
CPU time, which other jobs on a shared machine disturb less) and the cost in percent against the
native kernels, and the weights' hashes (they differ: that is why the functions pin one)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

from tests.support.paths import REPO_ROOT
from trainer.local.fleet import PINNED_X86_64

BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def child(epochs: int) -> None:
    """In the measured process: one warm-up epoch, then `epochs` timed; prints JSON."""
    import numpy as np

    from tests.performance.workloads import CAT_H5, CAT_NETWORK, network_shape
    from trainer.data.loader import load_raw, prepare
    from trainer.nn import init, monolithic

    dataset = prepare(load_raw(str(CAT_H5)), "auto", "float64")
    neurons, activations = network_shape(CAT_NETWORK)
    params = init.initialise([dataset.x_train.shape[0], *neurons], CAT_NETWORK["init"], CAT_NETWORK["seed"])
    rate = CAT_NETWORK["learning_rate"]
    monolithic.train(dataset.x_train, dataset.y_train, params, activations, 1, rate)
    started, cpu_started = time.perf_counter(), time.process_time()
    trained, _ = monolithic.train(dataset.x_train, dataset.y_train, params, activations, epochs, rate)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(trained[k]).tobytes() for k in sorted(trained)))
    print(
        json.dumps(
            {
                "s_per_epoch": seconds / epochs,
                "cpu_s_per_epoch": cpu_seconds / epochs,
                "weights": digest.hexdigest()[:16],
            }
        )
    )


SETTINGS = {
    "native": {},
    "pinned": PINNED_X86_64,
    "kernel only": {"OPENBLAS_CORETYPE": PINNED_X86_64["OPENBLAS_CORETYPE"]},
}


def measure(setting: str, threads: int, epochs: int) -> dict[str, float | str]:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    env.update({"OPENBLAS_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO_ROOT), **SETTINGS[setting]})
    out = subprocess.run(
        [sys.executable, "-m", "tests.performance.pin_cost", "--child", str(epochs)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def percent(times: dict[str, float], setting: str) -> str:
    return f"{100 * (times[setting] / times['native'] - 1):+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.performance.pin_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    print(f"the cat benchmark, {args.epochs} epochs, best of {args.repeats}; pin: {PINNED_X86_64}")
    for threads in args.threads:
        best: dict[str, float] = {}
        best_cpu: dict[str, float] = {}
        weights: dict[str, str] = {}
        for _ in range(args.repeats):
            for setting in SETTINGS:
                got = measure(setting, threads, args.epochs)
                best[setting] = min(best.get(setting, float("inf")), float(got["s_per_epoch"]))
                best_cpu[setting] = min(best_cpu.get(setting, float("inf")), float(got["cpu_s_per_epoch"]))
                weights[setting] = str(got["weights"])
        figures = [
            f"{setting} {1000 * best[setting]:.2f} ms/epoch ({percent(best, setting)}),"
            f" CPU {1000 * best_cpu[setting]:.2f} ms/epoch ({percent(best_cpu, setting)}), weights {weights[setting]}"
            for setting in SETTINGS
        ]
        print(f"{threads} thread(s):\n  " + "\n  ".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

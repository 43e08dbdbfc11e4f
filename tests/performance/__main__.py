"""`python -m tests.performance` (`make bench`): LNN against its own monolithic numpy trainer and
against PyTorch, on the cat benchmark and an MNIST-shaped workload; the data path and memory at
scale; the cold start of the image; the cost of a run; data-parallel runs, measured and modelled.
Prints a table with every figure against its target and writes it all as JSON. Not a test: it
measures; the tests assert.

The modules: workloads (the data sets and networks), measuring (the meter, memory, import time),
runs (one timed run of each kind), bench (the sections and the command line), report (the table and
the targets), torch_train (the PyTorch run, in .venv-torch), cloud (the local cloud the chains run
on: the functions in execution environments of the image's Python 3.12 and requirements.lock, not
this virtual environment), bench_functions (the metering handlers copied into that image's task root),
sweeps (the sweep section), parallel (the data-parallel section) and parallel_model (its Lambda model).
"""

import os
import sys


def _threads_from_argv(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


if __name__ == "__main__":
    # BLAS threads are fixed when numpy loads, so they are set before anything imports it.
    threads = _threads_from_argv(sys.argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    os.environ.setdefault("LNN_LOG_LEVEL", "WARNING")
    # The monolithic rows compute what the functions compute: their pinned kernel (tests/conftest.py).
    import platform

    from trainer.local.fleet import PINNED_X86_64

    if platform.machine() == "x86_64":
        for name, value in PINNED_X86_64.items():
            os.environ.setdefault(name, value)
    from tests.performance import bench

    raise SystemExit(bench.main())

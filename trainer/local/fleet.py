"""A mixed fleet for the local Lambda service: each new execution environment runs as if on one of
several kinds of host, as Lambda places environments on hosts with different CPUs.

What differs between such hosts, for LNN, is the code numpy runs:
- OpenBLAS (numpy's and scipy's wheels are built with DYNAMIC_ARCH) picks its kernels for the CPU
  it finds at load time, unless OPENBLAS_CORETYPE names one. Different kernels sum a matrix
  product in different orders: the cat benchmark's weights differ in their last bits after a few
  epochs (SkylakeX, Haswell and Sandybridge give three different weights; see
  tests/performance/README.md).
- numpy's own loops are dispatched to the widest instructions the CPU has: exp and log, say, run
  an AVX-512 implementation on an AVX-512 host and another one elsewhere, with different bits.

An emulated host therefore sets, in the environment's process, the kernel OpenBLAS would find
(OPENBLAS_CORETYPE) and the instruction sets its CPU lacks (NPY_DISABLE_CPU_FEATURES, numpy's own
switch). Both are set *beneath* the function's environment, as a host's CPU is beneath the
function's configuration: a function that pins a kernel gets that kernel on every host, and a
host's missing instructions stay missing whatever the function says. This machine must have every
instruction an emulated host has (it does: an AVX-512 Xeon emulates the hosts below).

`PINNED_X86_64` is what the functions pin so that results do not depend on the host: the Haswell
kernel (AVX2 and FMA, which every x86_64 Lambda host has) and numpy without AVX-512. The
Terraform functions module sets the same values; provision.py sets them in the local stack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CORETYPE = "OPENBLAS_CORETYPE"
NUMPY_DISABLED = "NPY_DISABLE_CPU_FEATURES"
# numpy's AVX-512 dispatch targets (numpy._core._multiarray_umath.__cpu_dispatch__ on x86_64).
AVX512 = (
    "AVX512F",
    "AVX512CD",
    "AVX512_KNL",
    "AVX512_KNM",
    "AVX512_SKX",
    "AVX512_CLX",
    "AVX512_CNL",
    "AVX512_ICL",
    "AVX512_SPR",
)
PINNED_X86_64 = {CORETYPE: "Haswell", NUMPY_DISABLED: " ".join(AVX512)}


@dataclass(frozen=True)
class Host:
    """A kind of host: the OpenBLAS kernel it gets and the numpy dispatch targets its CPU lacks."""

    kernel: str
    lacks: tuple[str, ...] = ()


HOSTS = {
    "SkylakeX": Host("SkylakeX"),  # Intel with AVX-512 (Skylake-SP, Cascade Lake)
    "Haswell": Host("Haswell", AVX512),  # Intel with AVX2, without AVX-512
    "Zen": Host("Zen", AVX512),  # AMD EPYC
    "Sandybridge": Host("Sandybridge", ("AVX2", "FMA3", *AVX512)),  # AVX only: older than Lambda's fleet
}


def check_hosts(hosts: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The names of a fleet, checked: ValueError names an unknown one."""
    unknown = [h for h in hosts if h not in HOSTS]
    if unknown or not all(isinstance(h, str) for h in hosts):
        raise ValueError(f"unknown host kind(s) {unknown or list(hosts)!r}: the local fleet knows {sorted(HOSTS)}")
    return tuple(hosts)


def placement(hosts: tuple[str, ...], seed: int, environment_number: int) -> str | None:
    """The host of the service's n-th new environment: the fleet's kinds in turn from a seeded
    start, so that any two environments started one after the other run on different kinds."""
    if not hosts:
        return None
    start = random.Random(f"{seed}:fleet").randrange(len(hosts))
    return hosts[(start + environment_number) % len(hosts)]


def host_variables(host: str | None, function_environment: dict[str, str]) -> dict[str, str]:
    """What the host sets in an environment's process, given the function's own variables (which
    are already set): its kernel unless the function pins one, and its missing instructions
    added to any the function disables."""
    if host is None:
        return {}
    kind = HOSTS[host]
    out = {} if CORETYPE in function_environment else {CORETYPE: kind.kernel}
    disabled = (*function_environment.get(NUMPY_DISABLED, "").split(), *kind.lacks)
    if disabled:
        out[NUMPY_DISABLED] = " ".join(dict.fromkeys(disabled))
    return out


def kernel_of(host: str | None, function_environment: dict[str, str]) -> str:
    """The OpenBLAS kernel an environment gets: the function's pin, or its host's, or (no fleet)
    what OpenBLAS finds on this machine."""
    if CORETYPE in function_environment:
        return function_environment[CORETYPE]
    return HOSTS[host].kernel if host is not None else "native"

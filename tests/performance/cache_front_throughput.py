"""How fast the local cloud's cache front relays: `python -m tests.performance.cache_front_throughput`.

A CacheFront before a real redis-server (as trainer/local/elasticache.py starts a node), and
redis-benchmark (a C client, in its own process as the Lambda workers are) doing SET and GET of 1 MiB
values through it with 1 and 2 connections: MiB/s, and the CPU the front's process spent per MiB (less
sensitive than MiB/s to a busy machine). `--busy N` adds N threads spinning in Python beside the front,
as moto and the Lambda service share the cloud's process and its GIL (their CPU is then counted too).
Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from trainer.local.cache_front import CacheFront
from trainer.local.servers import RedisServer, free_port, make_tls_files


def spin() -> None:
    while True:
        sum(range(1000))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=200, help="SETs and GETs of 1 MiB, each")
    p.add_argument("--busy", type=int, default=0, help="threads spinning in Python in the front's process")
    opts = p.parse_args()
    for _ in range(opts.busy):
        threading.Thread(target=spin, daemon=True).start()
    password = secrets.token_urlsafe(16)
    server = RedisServer(tls=False, unix_socket=True, acl_users=(f"user bench on >{password} ~* &* +@all",)).start()
    assert server.socket_path is not None
    tls_dir = Path(tempfile.mkdtemp(prefix="lnn-front-bench-"))
    files = make_tls_files(tls_dir)
    port = free_port()
    front = CacheFront(
        "127.0.0.1", port, files["cert"], files["key"], Path(server.socket_path), lambda user, token: password
    ).start()
    try:
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {opts.busy} busy thread(s)")
        for clients in (1, 2):
            before = os.times()
            command = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--tls", "--cacert", str(files["ca"])]
            command += ["--user", "bench", "-a", "token", "-t", "set,get", "-d", str(1 << 20)]
            command += ["-n", str(opts.requests), "-c", str(clients), "-q"]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            after = os.times()
            cpu_s = (after.user - before.user) + (after.system - before.system)
            rates = ", ".join(
                f"{name} {float(rps):.0f} MiB/s"
                for name, rps in re.findall(r"(\w+): ([\d.]+) requests per second", out)
            )
            print(
                f"{clients} connection(s): {rates}; front process CPU {1000 * cpu_s / (2 * opts.requests):.2f} ms/MiB"
            )
    finally:
        front.stop()
        server.stop()
        shutil.rmtree(tls_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

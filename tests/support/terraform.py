"""The Terraform tests' harness: the terraform binary, an offline provider set-up, work copies.

Nothing here writes into the repository. Every terraform command runs in a temporary copy of
terraform/ (so no .terraform/, state or override file lands in the checkout) with a Terraform CLI
configuration written to a temporary directory:

- If a filesystem mirror of hashicorp/aws is installed on the machine (a directory tree
  ``registry.terraform.io/hashicorp/aws/<version>/<os_arch>/terraform-provider-aws_*``), the CLI
  configuration installs the provider from it and never from the registry. The mirror is found by
  searching a few common roots (or ``LNN_TF_PROVIDER_MIRROR``); its path is never committed.
- Otherwise the configuration is empty and terraform uses the registry as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import REPO_ROOT

TERRAFORM_DIR = REPO_ROOT / "terraform"
PROVIDER = "registry.terraform.io/hashicorp/aws"
MIRROR_ROOTS = (
    "/opt",
    "/usr/share",
    "/usr/local/share",
    "/usr/local/lib",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)
# Environment a terraform subprocess must not inherit: it would change what is installed, which
# state or workspace is used, or which variables are set.
SCRUBBED_PREFIXES = ("TF_VAR_", "TF_CLI_ARGS")
SCRUBBED = {"TF_PLUGIN_CACHE_DIR", "TF_DATA_DIR", "TF_WORKSPACE", "TF_LOG", "TF_LOG_PATH"}
# The provider settings an emulator needs, as an override file the tests write into their
# temporary copies (never into terraform/): see terraform/README.md, "Pointing it at an emulator".
EMULATOR_PROVIDER_OVERRIDE = """\
# Written by the tests into temporary copies only: the emulator has no STS of the real kind and no
# instance metadata service, and serves S3 path-style. The endpoint and the key come from
# AWS_ENDPOINT_URL and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the provider's standard variables
# (the local cloud takes its own key only).
provider "aws" {
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
}
"""


def terraform_platform(terraform: str) -> str:
    out = subprocess.run([terraform, "version", "-json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["platform"]


def find_provider_mirror(platform: str) -> Path | None:
    """The directory holding ``registry.terraform.io/...`` with an aws provider for `platform`."""
    candidates = []
    if os.environ.get("LNN_TF_PROVIDER_MIRROR"):
        candidates.append(Path(os.environ["LNN_TF_PROVIDER_MIRROR"]))
    for root in MIRROR_ROOTS:
        base = Path(root).expanduser()
        if not base.is_dir():
            continue
        # The mirror directory itself, or up to three levels below a root (e.g. /opt/tf-plugins).
        for depth in range(4):
            pattern = "/".join(["*"] * depth + [PROVIDER])
            candidates.extend(p.parents[2] for p in sorted(base.glob(pattern)))
    for mirror in candidates:
        binaries = sorted((mirror / PROVIDER).glob(f"*/{platform}/terraform-provider-aws_*"))
        if binaries:
            return mirror
    return None


def write_cli_config(directory: Path, mirror: Path | None) -> Path:
    config = directory / "terraform.tfrc"
    if mirror is None:
        config.write_text("# no local provider mirror found: terraform installs from the registry\n")
    else:
        config.write_text(
            "provider_installation {\n"
            "  filesystem_mirror {\n"
            f"    path    = {json.dumps(str(mirror))}\n"
            f"    include = [{json.dumps(PROVIDER)}]\n"
            "  }\n"
            "  direct {\n"
            f"    exclude = [{json.dumps(PROVIDER)}]\n"
            "  }\n"
            "}\n"
        )
    return config


def copy_configuration(destination: Path) -> Path:
    """A copy of terraform/ without any local state, ready for `terraform init`."""
    shutil.copytree(
        TERRAFORM_DIR,
        destination,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate", "*.tfstate.*", "*_override.tf", "*.tfvars"),
    )
    return destination


class Terraform:
    """Runs terraform commands with the offline CLI configuration; returns CompletedProcess."""

    def __init__(self, binary: str, cli_config: Path, mirror: Path | None) -> None:
        self.binary = binary
        self.cli_config = cli_config
        self.mirror = mirror

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in SCRUBBED and not k.startswith(SCRUBBED_PREFIXES) and not k.startswith("AWS_")
        }
        env.update(
            TF_CLI_CONFIG_FILE=str(self.cli_config),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
        )
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            cwd=cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_side_by_side(
        self,
        commands: list[tuple[str, ...]],
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> list[subprocess.CompletedProcess[str]]:
        """Several commands at once in one directory (read-only ones: `terraform test` with
        different filters), each as `run` would give it."""
        started = [
            (
                args,
                subprocess.Popen(
                    [self.binary, *args],
                    cwd=cwd,
                    env=self.env(env),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for args in commands
        ]
        done = []
        try:
            for args, process in started:
                out, err = process.communicate(timeout=timeout)
                done.append(subprocess.CompletedProcess([self.binary, *args], process.returncode, out, err))
        finally:
            for _, process in started:  # none is left behind, whatever stopped the wait
                if process.poll() is None:
                    process.kill()
                    process.wait()
        return done

    @contextlib.contextmanager
    def shared_provider(self, cwd: Path, timeout: float = 120) -> Iterator[dict[str, str]]:
        """One AWS provider process, already started, for every command run with the environment
        this yields (Terraform's TF_REATTACH_PROVIDERS). Terraform otherwise starts the provider
        afresh for every module of a validation and about four times per run block of `terraform
        test`, each start building its whole schema: most of the CPU of a command whose provider is
        mocked or never configured, the only commands that use it (a deploy that shared one process
        failed a destroy once in seven runs: tests/README.md). A command run with it installs no
        provider (`init` then skips it): the binary is the one an earlier `init` installed in cwd."""
        binaries = sorted((cwd / ".terraform" / "providers" / PROVIDER).glob("*/*/terraform-provider-aws_*"))
        assert binaries, f"no provider installed in {cwd}: run init first"
        log = cwd.parent / "shared-provider.log"
        with open(log, "wb") as out:
            # -debug: the provider serves until it is stopped and prints how Terraform reaches it.
            process = subprocess.Popen(
                [str(binaries[-1]), "-debug"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while not (found := re.search(r"TF_REATTACH_PROVIDERS='([^']+)'", log.read_text(errors="replace"))):
                assert process.poll() is None, f"the provider exited ({process.returncode}): {log.read_text()}"
                assert time.monotonic() < deadline, f"the provider did not start within {timeout} s"
                time.sleep(0.1)
            yield {"TF_REATTACH_PROVIDERS": found.group(1)}
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def init(self, cwd: Path) -> None:
        # -lockfile=readonly: the committed lock file must be enough to install the provider.
        result = self.run("init", "-input=false", "-no-color", "-lockfile=readonly", cwd=cwd, timeout=300)
        assert result.returncode == 0, explain(result)


def explain(result: subprocess.CompletedProcess[str], limit: int = 6000) -> str:
    text = f"$ {' '.join(map(str, result.args))}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return text if len(text) <= limit else text[:1500] + "\n[...]\n" + text[-(limit - 1500) :]

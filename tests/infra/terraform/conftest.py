"""The Terraform tests' fixtures: the terraform binary with its offline CLI configuration
(tests/support/terraform.py), and one initialised copy of terraform/ for the read-only checks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.terraform import (
    Terraform,
    copy_configuration,
    find_provider_mirror,
    terraform_platform,
    write_cli_config,
)


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    binary = shutil.which("terraform")
    assert binary, "terraform is not installed (the Terraform tests need terraform >= 1.9 on PATH)"
    mirror = find_provider_mirror(terraform_platform(binary))
    config = write_cli_config(tmp_path_factory.mktemp("terraform-cli"), mirror)
    return Terraform(binary, config, mirror)


@pytest.fixture(scope="session")
def initialised_copy(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One initialised copy of terraform/ for the read-only checks (validate, terraform test)."""
    workdir = copy_configuration(tmp_path_factory.mktemp("terraform-static") / "terraform")
    # These checks need no state: a local backend replaces the S3 one (the deploy rehearsal in
    # test_apply_cycle.py inits the real backend block against the emulator's S3).
    (workdir / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    terraform.init(workdir)
    yield workdir


@pytest.fixture(scope="session")
def provider_env(terraform: Terraform, initialised_copy: Path) -> Iterator[dict[str, str]]:
    """The read-only checks' commands reach one provider process started once (Terraform.shared_provider)
    instead of starting it again for every module and run block. The provider is mocked or never
    configured in these checks; `init` above still installs it from the committed lock."""
    with terraform.shared_provider(initialised_copy) as env:
        yield env

""".github/scripts/terratest_cleanup.sh, run as the terratest workflow's last step runs it, after a Go
test that was killed before its deferred destroy (finding 11: a Go timeout skips deferred calls).

The Go test keeps each stack's working copy, its state included (local backend), under
LNN_TERRATEST_WORKDIR/<name>, and tags everything Test=terratest. Here a copy of terraform/ laid out
the same way is applied in part (the key and the topic: what a test killed early leaves) against the
patched moto server, then left behind. The script must destroy it and find
nothing tagged Test=terratest but the key, which waits out its deletion window; and a tagged
resource no state knows of must fail the step, named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.terraform import EMULATOR_PROVIDER_OVERRIDE, REPO_ROOT, Terraform, copy_configuration, explain
from trainer.local.servers import MotoServer

SCRIPT = REPO_ROOT / ".github" / "scripts" / "terratest_cleanup.sh"
REGION = "us-east-1"
NAME = "tt-killed"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer(program=("-m", "trainer.local.moto_patched"), cwd=str(REPO_ROOT)).start()
    try:
        yield server
    finally:
        server.stop()


def client(moto: MotoServer, service: str):  # boto3 clients have no common base type
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=moto.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def environment(terraform: Terraform, moto: MotoServer) -> dict[str, str]:
    return terraform.env(
        {
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            # The AWS CLI of the dev lock.
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
    )


def cleanup(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), str(workdir)], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def tagged(moto: MotoServer) -> list[str]:
    found = client(moto, "resourcegroupstaggingapi").get_resources(
        TagFilters=[{"Key": "Test", "Values": ["terratest"]}]
    )["ResourceTagMappingList"]
    return sorted(r["ResourceARN"] for r in found)


def test_a_killed_tests_stack_is_destroyed_and_nothing_tagged_is_left(
    terraform: Terraform, moto: MotoServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "lnn-terratest"
    stack = copy_configuration(workdir / NAME)
    # As the Go test's workCopy writes them: a local backend, so the state outlives the test.
    (stack / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    (stack / "emulator_override.tf").write_text(EMULATOR_PROVIDER_OVERRIDE)
    env = environment(terraform, moto)
    init = terraform.run("init", "-input=false", "-no-color", cwd=stack, env=env, timeout=300)
    assert init.returncode == 0, explain(init)
    applied = terraform.run(
        *("apply", "-auto-approve", "-input=false", "-no-color"),
        "-target=module.notifications",
        *(f"-var=name={NAME}", f"-var=aws_region={REGION}", '-var=tags={"Test":"terratest"}'),
        *("-var=force_destroy=true", "-var=dynamodb_deletion_protection=false"),
        cwd=stack,
        env=env,
        timeout=600,
    )
    assert applied.returncode == 0, explain(applied, limit=20000)
    before = tagged(moto)
    assert any(":sns:" in arn for arn in before) and any(":kms:" in arn for arn in before), before

    result = cleanup(workdir, env)
    assert result.returncode == 0, explain(result, limit=20000)
    assert f"destroying what the test left of {NAME}" in result.stdout
    assert terraform.run("state", "list", cwd=stack, env=env).stdout.strip() == ""
    assert [arn for arn in tagged(moto) if ":kms:" not in arn] == []
    keys = [client(moto, "kms").describe_key(KeyId=arn)["KeyMetadata"] for arn in tagged(moto)]
    assert keys and all(k["KeyState"] == "PendingDeletion" for k in keys), keys
    # A second run has nothing to destroy and nothing to report.
    again = cleanup(workdir, env)
    assert again.returncode == 0 and "destroying" not in again.stdout, explain(again)


def test_a_tagged_resource_outside_any_state_fails_the_step_by_name(
    terraform: Terraform, moto: MotoServer, tmp_path: Path
) -> None:
    topic = client(moto, "sns").create_topic(Name="tt-orphan", Tags=[{"Key": "Test", "Value": "terratest"}])["TopicArn"]
    try:
        (tmp_path / "empty").mkdir()
        result = cleanup(tmp_path / "empty", environment(terraform, moto))
        assert result.returncode == 1, explain(result)
        assert "::error::resources tagged Test=terratest are still there:" in result.stdout
        assert topic in result.stdout.splitlines()
    finally:
        client(moto, "sns").delete_topic(TopicArn=topic)

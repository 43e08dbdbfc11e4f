"""The workflows' scripts on the paths the deploy rehearsal (tests/infra/terraform/test_apply_cycle.py)
does not take: a rollout before the functions exist, a rollout not pinned by digest, the image
platform chosen before and after the functions exist, and the image reference. Run with the AWS
CLI of the dev lock against the session's moto server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3

from trainer.local.servers import MotoServer

SCRIPTS = Path(__file__).resolve().parents[3] / ".github" / "scripts"
DIGEST = "sha256:" + "ab" * 32


def run(moto_server: MotoServer, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **env,
    }
    return subprocess.run(
        [str(SCRIPTS / script), *args], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


def test_rollout_before_the_first_apply_says_so_and_succeeds(moto_server: MotoServer) -> None:
    result = run(moto_server, "rollout.sh", f"repo.example/lnn@{DIGEST}", "absent-launch", "absent-trainer")
    assert result.returncode == 0, result.stderr
    assert "absent-launch does not exist yet; nothing rolled out" in result.stdout
    assert f"terraform apply -var image_digest={DIGEST}" in result.stdout


def test_rollout_refuses_an_image_not_pinned_by_digest(moto_server: MotoServer) -> None:
    result = run(moto_server, "rollout.sh", "repo.example/lnn:latest", "fn")
    assert result.returncode == 2 and "is not pinned by digest" in result.stderr


def test_image_platform_follows_the_function_then_the_variable(moto_server: MotoServer) -> None:
    assert run(moto_server, "image_platform.sh", "absent").stdout.strip() == "linux/amd64"
    before = run(moto_server, "image_platform.sh", "absent", LAMBDA_ARCHITECTURE="arm64")
    assert before.stdout.strip() == "linux/arm64"
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    iam = boto3.client("iam", endpoint_url=moto_server.endpoint_url, **keys)
    role = iam.create_role(RoleName="platform-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    boto3.client("lambda", endpoint_url=moto_server.endpoint_url, **keys).create_function(
        FunctionName="platform-test",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Architectures=["arm64"],
    )
    # The function's own architecture wins over the variable.
    after = run(moto_server, "image_platform.sh", "platform-test", LAMBDA_ARCHITECTURE="x86_64")
    assert after.stdout.strip() == "linux/arm64", after.stderr


def test_image_ref_tags_main_by_commit_and_releases_by_tag(moto_server: MotoServer) -> None:
    main = run(moto_server, "image_ref.sh", "reg.example", "lnn", "branch", "main", "abc123").stdout.splitlines()
    assert main == ["image=reg.example/lnn:abc123", "repository=reg.example/lnn"]
    release = run(moto_server, "image_ref.sh", "reg.example", "lnn", "tag", "v1.2.0", "abc123").stdout.splitlines()
    assert release[0] == "image=reg.example/lnn:v1.2.0"


def test_plan_without_a_state_bucket_refuses_instead_of_planning_from_empty_state(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(SCRIPTS / "plan.sh"), str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "set TF_STATE_BUCKET" in result.stderr
    assert (tmp_path / "out" / "exitcode").read_text().strip() == "1"

"""The Makefile's image and deploy targets, read through `make -n` (what they would run; no
Docker engine or AWS account here): an image Lambda accepts, for the functions' platform, logged
in to the registry's own region, and no deploy without a digest."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
URL = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/lnn"


def dry_run(*args: str) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_push_builds_a_single_manifest_for_the_functions_platform_and_logs_in_to_the_registrys_region() -> None:
    out = dry_run("push", f"ECR_REPOSITORY_URL={URL}", "LAMBDA_ARCHITECTURE=arm64")
    assert "docker build --pull --platform linux/arm64 --provenance=false" in out
    registry = URL.split("/")[0]
    login = f'aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin "{registry}"'
    assert login in out
    assert "--platform linux/amd64" in dry_run("image", "LAMBDA_ARCHITECTURE=x86_64")


def test_deploy_and_rollout_refuse_without_a_digest() -> None:
    for target in ("deploy", "rollout"):
        result = subprocess.run(
            ["make", "--no-print-directory", target, "IMAGE_DIGEST=latest", "TF_DIR=/nonexistent"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert f"make {target}: IMAGE_DIGEST must be sha256:<64 hex>" in result.stdout + result.stderr


def test_bootstrap_and_init_name_what_is_missing() -> None:
    for target in ("bootstrap", "init"):
        result = subprocess.run(
            ["make", "--no-print-directory", target, "TF_STATE_BUCKET=", "AWS_REGION=", "TF_DIR=/nonexistent"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and f"make {target}: set TF_STATE_BUCKET and AWS_REGION" in result.stdout

"""Each assertion of tests/infra/terratest/lnn_stack_test.go (Go; runs in GitHub Actions only), mirrored
here, where no AWS account and no Go toolchain are at hand.

  Go subtest                      mirrored by
  ------------------------------  -------------------------------------------------------------------
  a run trains to SUCCEEDED       tests/infra/images/test_image_runtime.py::test_launch_then_trainer_steps_
  (status, test_accuracy >= 0.8)  through_the_entry_point: the same request through the image's real
                                  entry point (awslambdaric), Redis and moto; same DynamoDB item and
                                  threshold (test_same_request_and_threshold_as_the_image_test below)
  functions run in the VPC        test_functions_are_images_in_the_private_subnets (configuration)
  log groups keep 7 days          test_log_groups_keep_seven_days (configuration)
  the SNS topic exists            test_the_sns_topic_is_created_and_exported (configuration)
  outputs the Go test reads       test_outputs_the_go_test_reads_exist
  unique names, deferred Destroy, test_go_test_is_idiomatic_and_bounded
  t.Parallel, build tag, timeout,
  cleanup by tag

The configuration mirrors read the Terraform source (a deployed stack is what the Go test checks;
the Terraform suite in tests/infra/terraform plans it against moto). They are deliberately literal: a
change that would break the Go test's expectation breaks one of these first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.hcl import attribute, block
from tests.support.requests import IMAGE_RUN

REPO_ROOT = Path(__file__).resolve().parents[3]
TF = REPO_ROOT / "terraform"
GO_TEST = Path(__file__).resolve().parent / "lnn_stack_test.go"
GO_MOD = Path(__file__).resolve().parent / "go.mod"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "terratest.yml"
IMAGE_TEST = REPO_ROOT / "tests" / "infra" / "images" / "test_image_runtime.py"


def read(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO_ROOT)} is missing")
    return path.read_text()


def test_functions_are_images_in_the_private_subnets() -> None:
    functions = read(TF / "modules" / "functions" / "main.tf")
    fn = block(functions, r'resource\s+"aws_lambda_function"\s+"this"')
    assert attribute(fn, "package_type") == '"Image"'
    vpc = block(fn, r"vpc_config")
    assert attribute(vpc, "subnet_ids") == "var.subnet_ids"
    assert attribute(vpc, "security_group_ids") == "var.security_group_ids"
    root = block(read(TF / "main.tf"), r'module\s+"functions"')
    assert attribute(root, "subnet_ids") == "module.network.private_subnet_ids"
    # Go: exactly one security group per function.
    assert attribute(root, "security_group_ids") == "[module.network.lambda_security_group_id]"


def test_log_groups_keep_seven_days() -> None:
    functions = read(TF / "modules" / "functions" / "main.tf")
    group = block(functions, r'resource\s+"aws_cloudwatch_log_group"\s+"this"')
    assert attribute(group, "name") == '"/aws/lambda/${each.value.name}"'  # the name Go looks up
    assert attribute(group, "retention_in_days") == "var.log_retention_in_days"
    root = read(TF / "main.tf")
    passed = attribute(block(root, r'module\s+"functions"'), "log_retention_in_days")
    assert passed == "var.log_retention_in_days"
    default = attribute(block(read(TF / "variables.tf"), r'variable\s+"log_retention_in_days"'), "default")
    assert default == "7"
    assert "logRetentionDays = 7" in read(GO_TEST)


def test_the_sns_topic_is_created_and_exported() -> None:
    notifications = read(TF / "modules" / "notifications" / "main.tf")
    block(notifications, r'resource\s+"aws_sns_topic"\s+"this"')
    output = block(read(TF / "outputs.tf"), r'output\s+"sns_topic_arn"')
    assert attribute(output, "value") == "module.notifications.topic_arn"


def test_outputs_the_go_test_reads_exist() -> None:
    outputs = read(TF / "outputs.tf")
    wanted = set(re.findall(r'terraform\.Output\(t, [^,]+, "([a-z_]+)"\)', read(GO_TEST)))
    assert wanted == {
        "ecr_repository_url",
        "launch_function_name",
        "trainer_function_name",
        "table_name",
        "sns_topic_arn",
    }
    for name in wanted:
        block(outputs, rf'output\s+"{name}"')


def test_variables_the_go_test_sets_exist() -> None:
    variables = read(TF / "variables.tf")
    vars_block = block(read(GO_TEST), r"Vars: map\[string\]interface\{\}")
    names = re.findall(r'^\s*"([a-z_0-9]+)":', vars_block, re.MULTILINE)
    assert "name" in names and "force_destroy" in names
    for name in names:
        block(variables, rf'variable\s+"{name}"')


def test_same_request_and_threshold_as_the_image_test() -> None:
    go = read(GO_TEST)
    image = read(IMAGE_TEST)
    for key in ("epochs", "learning_rate", "seed"):
        assert re.search(rf'"{key}":\s+{re.escape(str(IMAGE_RUN[key]))},', go), key
    assert '"dataset":       "moons"' in go and IMAGE_RUN["dataset"] == "moons"
    assert "REQUEST = IMAGE_RUN" in image
    assert "minTestAccuracy  = 0.8" in go
    assert "MIN_TEST_ACCURACY = 0.8" in image
    # Same DynamoDB item: pk RUN#<run_id>, sk RUN, attributes status and test_accuracy.
    for text in (go, image):
        assert '"RUN#' in text and '"RUN"' in text and '"test_accuracy"' in text


def test_go_test_is_idiomatic_and_bounded() -> None:
    go = read(GO_TEST)
    assert "t.Parallel()" in go
    assert "random.UniqueId()" in go
    assert re.search(r"defer terraform\.Destroy\(t, options\)", go)
    assert go.index("defer terraform.Destroy") < go.index("terraform.InitAndApply")
    assert "retry.DoWithRetry" in go
    assert 'os.Getenv("AWS_ENDPOINT_URL")' in go
    mod = read(GO_MOD)
    assert re.search(r"github\.com/gruntwork-io/terratest v0\.\d+\.\d+", mod)
    # Never run by a plain `go test ./...`; a Go timeout well inside the job's, and a cleanup step
    # that runs even when the Go timeout skipped the deferred Destroy.
    assert go.startswith("//go:build terratest\n")
    assert 'name := "lnn-tt-" + id' in go and 'backend \\"local\\"' in go
    workflow = read(WORKFLOW)
    go_timeout = int(re.search(r"go test -tags terratest -v -count=1 -timeout (\d+)m", workflow).group(1))
    job_timeout = int(re.search(r"timeout-minutes: (\d+)", workflow).group(1))
    assert 60 <= go_timeout < job_timeout
    cleanup = workflow[workflow.index("Destroy what the test left") :]
    assert "if: always()" in cleanup and "terratest_cleanup.sh" in cleanup


def test_every_documented_go_test_command_has_the_build_tag_and_the_timeout() -> None:
    """Without -tags terratest `go test` runs nothing; with less time it is killed mid-deploy."""
    readme = read(Path(__file__).resolve().parent / "README.md")
    for source in (readme, read(GO_TEST), read(WORKFLOW)):
        commands = re.findall(r"go test -[^\n`]*", source)  # commands, not the prose's `go test ./...`
        assert commands
        for command in commands:
            assert "-tags terratest" in command and "-timeout 100m" in command, command

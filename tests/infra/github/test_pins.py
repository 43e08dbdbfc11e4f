"""Pins everywhere: every image the repository names is pinned by digest, and the tools CI and
`make` install from the network (checkov, uv) come from hashed locks, one version each."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
HASHED_REQUIREMENT = re.compile(
    r"^([A-Za-z0-9_.-]+)==([^ \\]+)[^\n]*\\\n(\s+--hash=sha256:[0-9a-f]{64}[ \\]*\n)+", re.M
)


def image_references() -> list[tuple[str, str]]:
    """(file, image) for every FROM, `# syntax=` and workflow `image:`/`docker://` reference."""
    found = []
    for dockerfile in sorted((REPO_ROOT / "images").rglob("Dockerfile*")):
        text = dockerfile.read_text()
        stages = {m.lower() for m in re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.I | re.M)}
        for image in re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", text, re.I | re.M):
            if image.lower() not in stages:
                found.append((dockerfile.name, image))
        found += [(dockerfile.name, image) for image in re.findall(r"^#\s*syntax\s*=\s*(\S+)", text, re.M)]
    for workflow in sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml")):
        text = workflow.read_text()
        found += [(workflow.name, i) for i in re.findall(r"^\s*(?:image|container):\s*([^\s#{]+)", text, re.M)]
        found += [(workflow.name, i) for i in re.findall(r"docker://([^\s\"']+)", text)]
        found += [(workflow.name, i) for i in re.findall(r"image=([^\s,\"']+)", text)]
    return found


def test_every_image_reference_is_pinned_by_digest() -> None:
    references = image_references()
    assert any(name == "Dockerfile" for name, _ in references)  # the base images are found
    unpinned = [(name, image) for name, image in references if not DIGEST.search(image)]
    assert unpinned == []


def test_every_buildx_builder_names_its_buildkit_image() -> None:
    # Without driver-opts the action starts the builder from moby/buildkit:buildx-stable-1, a tag
    # that moves and that image_references() cannot see.
    for workflow in sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml")):
        steps = re.split(r"^\s*- ", workflow.read_text(), flags=re.M)
        for step in (s for s in steps if "docker/setup-buildx-action@" in s):
            assert re.search(r"driver-opts:\s*image=moby/buildkit:\S+@sha256:[0-9a-f]{64}", step), workflow.name


def test_the_check_catches_a_tag_only_reference(tmp_path: Path) -> None:
    assert DIGEST.search("python:3.12-slim@sha256:" + "a" * 64)
    assert not DIGEST.search("docker/dockerfile:1")
    assert not DIGEST.search("moby/buildkit:buildx-stable-1")


def locked(lock: str) -> dict[str, str]:
    text = (REPO_ROOT / lock).read_text()
    hashed = [(m.group(1).lower(), m.group(2)) for m in HASHED_REQUIREMENT.finditer(text)]
    # Every requirement line of the lock is a hashed one (a universal lock may list a package twice,
    # under different environment markers).
    listed = re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.M)
    assert len(listed) == len(hashed), f"{lock}: a requirement without hashes"
    return dict(hashed)


def test_checkov_comes_from_one_hashed_lock_for_ci_and_make() -> None:
    assert locked("requirements-checkov.lock")["checkov"] == "3.3.30"
    makefile = (REPO_ROOT / "Makefile").read_text()
    workflow = (REPO_ROOT / ".github" / "workflows" / "terraform.yml").read_text()
    for text in (makefile, workflow):
        installs = [
            line
            for line in text.splitlines()
            if "pip" in line and ("install" in line or "sync" in line) and "checkov" in line
        ]
        assert installs and all("--require-hashes" in i and "requirements-checkov.lock" in i for i in installs)
        assert "checkov==" not in text and "CHECKOV_VERSION" not in text


def test_uv_is_installed_with_a_hash() -> None:
    assert set(locked("requirements-uv.lock")) == {"uv"}
    makefile = (REPO_ROOT / "Makefile").read_text()
    # Every environment gets uv from pip, and from the hashed lock only (the dev and the demo environments).
    installs = [line.strip() for line in makefile.splitlines() if "/bin/pip install" in line and "uv" in line]
    assert len(installs) >= 2
    assert all(i.endswith("pip install --quiet --require-hashes --no-deps -r requirements-uv.lock") for i in installs)
    assert "uv==" not in makefile

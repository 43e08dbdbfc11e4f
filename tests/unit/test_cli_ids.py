"""The CLI checks a RUN_ID (or SWEEP_ID) before it names a folder: an id that is a path writes
nothing anywhere, and is refused with the id rule's message."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import cli

PATH_IDS = ["../victim", "..", "a/../../victim", "/tmp", "victim/.", "run\n"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"") for p in sorted(root.rglob("*"))}


def _cli(capsys, *args: str) -> tuple[int, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse refuses an argument so
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("run_id", PATH_IDS)
def test_cancel_of_a_path_writes_nothing(tmp_path: Path, run_id: str, monkeypatch, capsys) -> None:
    for name in ("LAUNCH_FUNCTION_ARN", "TABLE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "RUNS_DIR", tmp_path / "lnn-runs")
    (tmp_path / "lnn-runs").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "run.json").write_text('{"run": {"status": "RUNNING"}}')
    before = _tree(tmp_path)
    for command in ("cancel", "resume", "status", "plot"):
        code, err = _cli(capsys, command, run_id)
        assert code == 2 and "must be 1-64 letters, digits, '-' or '_'" in err, (command, err)
    code, err = _cli(capsys, "sweep", "status", run_id)
    assert code == 2 and "must be 1-56 letters" in err, err
    assert _tree(tmp_path) == before

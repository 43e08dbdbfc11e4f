"""One name for a failed run's reason: what the run store writes is what the Go test reads."""

from __future__ import annotations

from pathlib import Path

from trainer.stores.run_store import FAILURE_REASON

GO_TEST = Path(__file__).parent / "lnn_stack_test.go"


def test_the_go_test_reads_the_failure_reason_the_store_writes() -> None:
    source = GO_TEST.read_text()
    assert f'item.Item["{FAILURE_REASON}"]' in source
    assert 'item.Item["reason"]' not in source

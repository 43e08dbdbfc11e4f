"""The local cloud's /_lnn/ controls (trainer.local.controls), without a server: the route table
answers each control, and a request it cannot serve gets a status and a message naming the problem
and changes nothing. The Lambda service here starts no environment (nothing is invoked)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import trainer.local
from trainer.local.controls import ROUTES, Controls
from trainer.local.faults import FaultInjector
from trainer.local.handler_faults import HandlerFaultPlans
from trainer.local.lambda_service import FunctionConfig, FunctionNotFound, LambdaService, Runtime


def no_function(name: str) -> FunctionConfig:
    raise FunctionNotFound(name)


@pytest.fixture
def controls(tmp_path) -> Iterator[Controls]:
    service = LambdaService(
        runtime=Runtime(python="/nonexistent/python", environ={}, cwd=str(tmp_path)),
        configs=no_function,
        cloud_env={},
        send_to_destination=lambda arn, record: None,
        log_dir=tmp_path,
        account_concurrency=1,
    )
    try:
        yield Controls(service, FaultInjector(), HandlerFaultPlans(tmp_path / "plans"), elasticache=None)
    finally:
        service.close()


def call(controls: Controls, method: str, path: str, body: object = None, query: str = "") -> tuple[int, dict]:
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    environ = {"CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data), "QUERY_STRING": query}
    return controls.serve(method, path, environ)


def test_every_route_is_a_method_and_a_control_path() -> None:
    assert all(method in ("GET", "POST") and path.startswith("/_lnn/") for method, path in ROUTES)
    assert ("GET", "/_lnn/handler-faults") in ROUTES and ("POST", "/_lnn/handler-faults") in ROUTES


def test_the_readme_lists_every_control() -> None:
    readme = (Path(trainer.local.__file__).parent / "README.md").read_text()
    cells = [line.split("|")[1] for line in readme.splitlines() if line.startswith("| `")]

    def listed(method: str, path: str) -> bool:
        return any(method in cell and re.search(re.escape(path) + r"[`?]", cell) for cell in cells)

    assert [route for route in ROUTES if not listed(*route)] == []


def test_an_unknown_control_or_method_is_not_found(controls) -> None:
    assert call(controls, "GET", "/_lnn/nothing") == (404, {"message": "unknown local cloud control"})
    assert call(controls, "POST", "/_lnn/stats", {})[0] == 404
    assert call(controls, "GET", "/_lnn/nodes")[0] == 404  # no caches in this cloud


@pytest.mark.parametrize(
    ("path", "body", "status", "names"),
    [
        ("/_lnn/chaos", b"{not json", 400, "not JSON"),
        ("/_lnn/chaos", [1, 2], 400, "JSON object"),
        ("/_lnn/chaos", {"duplicate": 2}, 400, "duplicate"),
        ("/_lnn/faults", {"fraction": 2}, 400, "fraction"),
        ("/_lnn/faults", {"services": ["lambda"]}, 400, "lambda"),
        ("/_lnn/hold", {}, 400, "function"),
        ("/_lnn/deliver", {"request_id": "r", "copies": 0}, 400, "copies"),
        ("/_lnn/deliver", {"request_id": "r", "copies": "2"}, 400, "copies"),
        ("/_lnn/deliver", {"request_id": "r"}, 404, "'r'"),
        ("/_lnn/drop", {"request_id": "r"}, 404, "'r'"),
        ("/_lnn/handler-faults", {"function": "a/b", "plan": {}}, 400, "a/b"),
    ],
)
def test_a_request_a_control_cannot_serve_is_refused_and_changes_nothing(controls, path, body, status, names) -> None:
    before = call(controls, "GET", "/_lnn/stats")
    got_status, document = call(controls, "POST", path, body)
    assert got_status == status and names in document["message"]
    assert call(controls, "GET", "/_lnn/stats") == before


def test_the_controls_act_on_the_service(controls) -> None:
    status, chaos = call(controls, "POST", "/_lnn/chaos", {"seed": 3, "duplicates": 2})
    assert status == 200 and chaos["duplicates"] == 2 and controls.service.chaos.seed == 3
    assert call(controls, "POST", "/_lnn/hold", {"function": "f"}) == (200, {})
    assert call(controls, "GET", "/_lnn/held", query="function=f") == (200, {"held": []})
    assert call(controls, "GET", "/_lnn/idle") == (200, {"idle": True})
    plan = {"points": [{"target": "tensor_store.commit"}]}
    assert call(controls, "POST", "/_lnn/handler-faults", {"function": "f", "plan": plan})[0] == 200
    assert call(controls, "GET", "/_lnn/handler-faults", query="function=f") == (200, {"function": "f", "plan": plan})

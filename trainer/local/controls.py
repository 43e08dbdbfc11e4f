"""The local cloud's own controls, under /_lnn/ (signed as any request to the cloud is): a route
table of (method, path) -> handler. Each handler reads the request's JSON body or query and answers
a JSON document; a request it cannot serve raises `ControlError` (the status and a message naming
the problem) and changes nothing. trainer/local/README.md lists them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from trainer.local.faults import FaultInjector, FaultPlan
from trainer.local.handler_faults import HandlerFaultPlans
from trainer.local.lambda_service import Chaos, LambdaService

if TYPE_CHECKING:
    from trainer.local.elasticache import LocalElastiCache


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class ControlRequest:
    body: dict[str, Any]
    query: dict[str, list[str]]

    @classmethod
    def of(cls, environ: dict[str, Any]) -> ControlRequest:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        except ValueError as exc:
            raise ControlError(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ControlError(400, "the body must be a JSON object")
        return cls(body, parse_qs(environ.get("QUERY_STRING", "")))

    def field(self, name: str) -> Any:
        if name not in self.body:
            raise ControlError(400, f"the body has no {name!r}")
        return self.body[name]


@dataclass
class Controls:
    """What the controls act on: the Lambda service, the fault systems, the caches."""

    service: LambdaService
    faults: FaultInjector
    handler_faults: HandlerFaultPlans
    elasticache: LocalElastiCache | None

    def serve(self, method: str, path: str, environ: dict[str, Any]) -> tuple[int, Any]:
        """(status, JSON document) for one control request."""
        handler = ROUTES.get((method, path))
        if handler is None:
            return 404, {"message": "unknown local cloud control"}
        try:
            return 200, handler(self, ControlRequest.of(environ))
        except ControlError as error:
            return error.status, {"message": error.message}

    # ---- the Lambda service ---------------------------------------------------------------------
    def stats(self, _: ControlRequest) -> Any:
        return {
            **self.service.snapshot(),
            "aws_faults": self.faults.snapshot(),
            "elasticache": self.elasticache.nodes() if self.elasticache else {},
        }

    def environments(self, _: ControlRequest) -> Any:
        return {"environments": self.service.environments_listing()}

    def reset_stats(self, _: ControlRequest) -> Any:
        self.service.reset_stats()
        self.faults.reset_stats()
        return {}

    def idle(self, _: ControlRequest) -> Any:
        return {"idle": self.service.idle()}

    def chaos(self, request: ControlRequest) -> Any:
        """New chaos settings; warm environments stay (trainer.local.lambda_service.chaos)."""
        try:
            chaos = Chaos(**request.body)
        except (TypeError, ValueError) as exc:  # an unknown setting or host kind: nothing changes
            raise ControlError(400, f"chaos settings refused: {exc}") from exc
        self.service.set_chaos(chaos)
        return asdict(self.service.chaos)

    def hold(self, request: ControlRequest) -> Any:
        self.service.hold(str(request.field("function")), bool(request.body.get("hold", True)))
        return {}

    def held(self, request: ControlRequest) -> Any:
        return {"held": self.service.held(request.query.get("function", [""])[0])}

    def deliver(self, request: ControlRequest) -> Any:
        request_id = request.field("request_id")
        copies, keep = request.body.get("copies", 1), bool(request.body.get("keep", False))
        if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= 64:
            raise ControlError(400, f"copies must be a whole number from 1 to 64, not {copies!r}")
        try:
            return self.service.deliver_held(request_id, copies, keep)
        except KeyError as exc:
            raise ControlError(404, f"no held event {request_id!r}") from exc

    def drop(self, request: ControlRequest) -> Any:
        request_id = request.field("request_id")
        try:
            self.service.drop_held(request_id)
        except KeyError as exc:
            raise ControlError(404, f"no held event {request_id!r}") from exc
        return {}

    # ---- AWS-side faults ------------------------------------------------------------------------
    def set_faults(self, request: ControlRequest) -> Any:
        try:
            plan = FaultPlan(**request.body)
        except (TypeError, ValueError) as exc:  # an unknown setting, service or fraction: nothing changes
            raise ControlError(400, f"fault plan refused: {exc}") from exc
        self.faults.set_plan(plan)
        return self.faults.snapshot()

    def get_faults(self, _: ControlRequest) -> Any:
        return self.faults.snapshot()

    def set_handler_faults(self, request: ControlRequest) -> Any:
        """{"function": name, "plan": {...} | null}: the plan the function's handler reads from its
        next invocation on (trainer.local.handler_faults); warm environments stay."""
        function, plan = request.field("function"), request.field("plan")
        try:
            self.handler_faults.set(function, plan)
        except ValueError as exc:
            raise ControlError(400, f"handler fault plan refused: {exc}") from exc
        return {"function": function, "plan": plan}

    def get_handler_faults(self, request: ControlRequest) -> Any:
        function = request.query.get("function", [""])[0]
        try:
            return {"function": function, "plan": self.handler_faults.get(function)}
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc

    # ---- ElastiCache's nodes --------------------------------------------------------------------
    def _caches(self) -> LocalElastiCache:
        if self.elasticache is None:
            raise ControlError(404, "unknown local cloud control")
        return self.elasticache

    def nodes(self, _: ControlRequest) -> Any:
        return self._caches().nodes()

    def replace_node(self, request: ControlRequest) -> Any:
        group_id = str(request.body.get("replication_group_id", ""))
        try:
            return self._caches().replace_node(group_id, request.body.get("delay_s"))
        except KeyError as exc:
            raise ControlError(404, f"no replication group {group_id!r}") from exc
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc

    def reset_connections(self, request: ControlRequest) -> Any:
        group_id = str(request.body.get("replication_group_id", ""))
        try:
            return {"connections": self._caches().reset_connections(group_id)}
        except KeyError as exc:
            raise ControlError(404, f"no replication group {group_id!r}") from exc


ROUTES: dict[tuple[str, str], Callable[[Controls, ControlRequest], Any]] = {
    ("GET", "/_lnn/stats"): Controls.stats,
    ("GET", "/_lnn/environments"): Controls.environments,
    ("POST", "/_lnn/reset-stats"): Controls.reset_stats,
    ("GET", "/_lnn/idle"): Controls.idle,
    ("POST", "/_lnn/chaos"): Controls.chaos,
    ("POST", "/_lnn/hold"): Controls.hold,
    ("GET", "/_lnn/held"): Controls.held,
    ("POST", "/_lnn/deliver"): Controls.deliver,
    ("POST", "/_lnn/drop"): Controls.drop,
    ("POST", "/_lnn/faults"): Controls.set_faults,
    ("GET", "/_lnn/faults"): Controls.get_faults,
    ("POST", "/_lnn/handler-faults"): Controls.set_handler_faults,
    ("GET", "/_lnn/handler-faults"): Controls.get_handler_faults,
    ("GET", "/_lnn/nodes"): Controls.nodes,
    ("POST", "/_lnn/replace-node"): Controls.replace_node,
    ("POST", "/_lnn/reset-connections"): Controls.reset_connections,
}

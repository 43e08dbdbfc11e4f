"""The Invoke API's answers, and its errors as classes, one per error code, as AWS names them (the
shape of moto's `exceptions.py`): a check raises one, and `LambdaService.invoke` turns it into the
HTTP answer botocore parses (status, `x-amzn-ErrorType`, a JSON body with the message)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Answer:
    """An HTTP answer of the Invoke API."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class LambdaError(Exception):
    """An error the Invoke API answers itself (the function never runs)."""

    status = 400
    code = "ServiceException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def answer(self) -> Answer:
        body = json.dumps({"Type": "User", "message": self.message}).encode()
        return Answer(self.status, body, {"x-amzn-ErrorType": self.code, "Content-Type": "application/json"})


class ResourceNotFound(LambdaError):
    status, code = 404, "ResourceNotFoundException"

    def __init__(self, arn: str) -> None:
        super().__init__(f"Function not found: {arn}")


class InvalidParameterValue(LambdaError):
    status, code = 400, "InvalidParameterValueException"


class UnknownInvocationType(InvalidParameterValue):
    def __init__(self, invocation_type: str) -> None:
        super().__init__(
            f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        )


class RequestTooLarge(LambdaError):
    status, code = 413, "RequestTooLargeException"

    def __init__(self, limit: int, operation: str) -> None:
        super().__init__(f"Request must be smaller than {limit} bytes for the {operation} operation")


class InvalidRequestContent(LambdaError):
    status, code = 400, "InvalidRequestContentException"

    def __init__(self, reason: object) -> None:
        super().__init__(f"Could not parse request body into json: {reason}")


class TooManyRequests(LambdaError):
    """Throttled: the function (or the account) is at its concurrency limit."""

    status, code = 429, "TooManyRequestsException"

    def __init__(self) -> None:
        super().__init__("Rate Exceeded.")

"""Which AWS errors say nothing about the request (a data-parallel worker that meets one again is
lost for a while, not the run's failure): throttling, 5xx answers and failed connections, as
botocore's standard retry mode counts them; a refused request is not one."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from trainer.aws import transient


def _error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_error("ThrottlingException", 400), True),
        (_error("ProvisionedThroughputExceededException", 400), True),
        (_error("SlowDown", 503), True),
        (_error("InternalServerError", 500), True),
        (_error("TooManyRequestsException", 429), True),
        (_error("Throttled", 429), True),
        (EndpointConnectionError(endpoint_url="https://dynamodb"), True),
        (ReadTimeoutError(endpoint_url="https://s3"), True),
        (_error("ValidationException", 400), False),
        (_error("AccessDeniedException", 400), False),
        (_error("NoSuchKey", 404), False),
        (ValueError("a NaN in the data"), False),
        (KeyError("x_train"), False),
    ],
)
def test_an_aws_error_is_transient_only_when_a_retry_may_not_meet_it(error: BaseException, expected: bool) -> None:
    assert transient(error) is expected

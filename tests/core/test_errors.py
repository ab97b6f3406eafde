"""What an error answer of the cloud means: already done, come back later, or refused for good."""

from __future__ import annotations

import pytest

from handler.core.errors import Disposition, classify_detach_error, is_retryable


@pytest.mark.parametrize(
    ("status", "code", "message", "disposition"),
    [
        (400, "Ecs.0111", "the volume is not attached", Disposition.ALREADY_DETACHED),
        (404, "Ecs.1000", "Nova: itemNotFound (volume gone)", Disposition.ALREADY_DETACHED),
        (400, "Ecs.1000", "Nova timed out", Disposition.REJECTED),  # Ecs.1000 alone is no proof
        (400, "Ecs.0005", "itemNotFound in the text of another error", Disposition.REJECTED),
        (409, "Ecs.0603", "other commands are running", Disposition.BUSY),
        (500, "conflictingRequest", "Nova is busy", Disposition.BUSY),
        (401, "APIGW.0301", "bad signature", Disposition.UNAUTHORIZED),
        (403, "IAM.0002", "forbidden", Disposition.UNAUTHORIZED),
        (402, "Ecs.0005", "payment required", Disposition.REJECTED),
        (429, "APIGW.0308", "throttled", Disposition.RETRY),
        (430, "Ecs.0005", "not a throttle", Disposition.REJECTED),
        (500, "Ecs.0005", "server error", Disposition.RETRY),
        (400, "Ecs.0615", "task submission failed", Disposition.RETRY),
        (400, "Ecs.0005", "invalid parameter", Disposition.REJECTED),
    ],
)
def test_a_detach_error_is_classified_by_code_then_status(
    status: int, code: str, message: str, disposition: Disposition
) -> None:
    assert classify_detach_error(status, code, message) is disposition


@pytest.mark.parametrize(
    ("status", "code", "retry"),
    [
        (429, "APIGW.0308", True),
        (430, "Ecs.0005", False),
        (500, "Ecs.0005", True),
        (499, "Ecs.0005", False),
        (400, "Ecs.0603", True),  # busy: a read can try again later
        (400, "Ecs.1001", True),  # transient
        (404, "Ecs.0114", False),
        (403, "IAM.0002", False),
    ],
)
def test_a_read_is_retried_when_the_error_passes(status: int, code: str, retry: bool) -> None:
    assert is_retryable(status, code) is retry

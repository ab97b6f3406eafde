"""What both functions do with a finished request: publish its one result event, and carry the
request's fields from one message of the flow into the next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handler.core.models import DetachRequest
from handler.functions.ports import Publisher
from handler.support.log import log_event

if TYPE_CHECKING:  # whoever has a result has imported them (a detach cold start has none)
    from handler.core.followups import DetachResult


def request_fields(message: DetachRequest) -> dict[str, object]:
    """The request part of any message of the flow, to carry it into the next one."""
    return message.model_dump(include=set(DetachRequest.model_fields))


def publish_result(results: Publisher, result: DetachResult, *, source: str) -> None:
    """Publish ``result`` as its CloudEvent (raises what the topic raises) and log it."""
    from handler.core.followups import result_event  # noqa: PLC0415 (above)

    results.publish(result_event(result, source=source).model_dump_json())
    log_event(
        "detach.result",
        outcome=result.outcome.value,
        server_id=result.server_id,
        volume_id=result.volume_id,
        job_id=result.job_id,
        error_code=result.error_code,
        fail_reason=result.fail_reason,
        polls=result.polls,
        duration_s=result.duration_s,
        idempotency_key=result.idempotency_key,
        alert_id=result.alert_id,
        request_id=result.request_id,
    )

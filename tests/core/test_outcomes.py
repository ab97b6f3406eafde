"""One answer for a request of several records, and what a queue consumer does with its message."""

from __future__ import annotations

import pytest

from handler.core.outcomes import DetachStatus, QueueAction, batch_disposition, batch_http_status

S = DetachStatus


@pytest.mark.parametrize(
    ("codes", "answer"),
    [
        ([], 200),  # nothing to do
        ([202, 503, 409], 503),  # one must be retried: the sender retries all
        ([202, 409, 422], 202),  # a detach was started
        ([422, 422], 422),  # nothing could be read
        ([409, 422], 409),  # refusals and unreadable records
        ([409], 409),
        ([200, 409], 200),  # one already detached: nothing failed for good
        ([200, 422], 200),
        ([200], 200),
    ],
)
def test_a_batch_answers_with_its_most_telling_record(codes: list[int], answer: int) -> None:
    assert batch_http_status(iter(codes)) == answer


@pytest.mark.parametrize(
    ("statuses", "action"),
    [
        ([], QueueAction.DEAD_LETTER),  # no records at all
        ([S.INVALID, S.INVALID], QueueAction.DEAD_LETTER),
        ([S.INVALID, S.ACCEPTED, S.RETRY], QueueAction.REQUEUE),
        ([S.RETRY], QueueAction.REQUEUE),
        ([S.INVALID, S.ACCEPTED], QueueAction.ACK),  # the readable record was handled
        ([S.REJECTED], QueueAction.ACK),
        ([S.QUEUED, S.DUPLICATE, S.IGNORED], QueueAction.ACK),
    ],
)
def test_a_message_is_requeued_dead_lettered_or_acknowledged(
    statuses: list[DetachStatus], action: QueueAction
) -> None:
    assert batch_disposition(iter(statuses)) is action

"""The jobs topic's consumer: each message is a job to poll (``ecs-detach.accepted``), a
queued request taking its turn (``ecs-detach.queued``) or a request kept for an approval,
decided or due (``ecs-detach.approval_turn``). Every way the jobs topic is consumed
(the worker, FunctionGraph triggers, SMN pushes, Knative) goes through ``JobsFunction``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handler.core.followups import ApprovalTurn, DetachQueued
from handler.core.models import CloudEvent
from handler.functions.detach import DetachFunction
from handler.functions.poll import PollFunction
from handler.sources import parse_job_event


@dataclass(frozen=True)
class JobStep:
    """What became of one message: ``what`` happened (for logs and metrics), and ``again``, the
    message to put back on the jobs topic after ``delay_s`` (None: the message is done)."""

    what: str
    job_id: str | None = None  # the job polled, or the one a queued request's turn started
    again: str | None = None
    delay_s: float = 0.0


class JobsFunction:
    def __init__(self, detach: DetachFunction, poll: PollFunction) -> None:
        self._detach = detach
        self._poll = poll

    def __call__(self, message: str | bytes | dict[str, Any]) -> JobStep:
        """Handle one message; raises ``InvalidInput`` for one that is not a job event (the
        consumer dead-letters it), and what the topics or the store raise (it comes back)."""
        event = parse_job_event(message)
        data = event.data
        if isinstance(data, ApprovalTurn):
            return self._approval(event, data)
        if isinstance(data, DetachQueued):
            turn = self._detach.take_turn(data)
            if turn.queued is None:
                return JobStep(turn.status.value, turn.job_id)
            again = event.model_copy(update={"data": turn.queued})
            return JobStep("queued", None, again.model_dump_json(), turn.retry_after_s or 0.0)
        polled = self._poll(data)
        if polled.result is not None:
            return JobStep(polled.result.outcome.value, data.job_id)
        if polled.next is None:
            return JobStep("untrusted", data.job_id)
        again = event.model_copy(update={"data": polled.next})
        return JobStep("continued", data.job_id, again.model_dump_json(), polled.delay_s)

    def _approval(self, event: CloudEvent[Any], turn: ApprovalTurn) -> JobStep:
        step = self._detach.take_approval(turn)
        if step.again is not None:
            again = event.model_copy(update={"data": step.again})
            return JobStep("waiting", None, again.model_dump_json(), step.delay_s)
        return JobStep(step.what, step.outcome.job_id if step.outcome is not None else None)

"""The notify function: each event of the results topic becomes a message on the chat platforms,
email or SMS a deployment chose (docs/notifications.md).

One Jinja2 template per outcome (``templates/{outcome}.txt.j2``: the first line is the title,
the rest the text), overridable by a file of the same name in ``ECS_DETACH_NOTIFY_TEMPLATES``.
Each channel takes the outcomes it was given (default ``ECS_DETACH_NOTIFY_OUTCOMES``). A channel
that delivered an event is marked in the store (``notified:{channel}:{event id}``), so when
another channel fails and the event comes back (the consumer retries it, then dead-letters it)
nobody gets it twice. Notify only reads the results: it never blocks or changes a detach.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from handler.core.approval import Approval
from handler.core.followups import DetachResult
from handler.core.models import EVENT_APPROVAL_REQUESTED
from handler.core.validation import FieldError, InvalidInput, load_object
from handler.functions.channel_config import OUTCOMES
from handler.functions.channels import DeliveryFailed, Notice, Sender
from handler.store import Store
from handler.support.log import log_event

_PREFIX = "ecs-detach."


class Templates:
    """The message templates: the built-in ones, each overridable by a file in ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("handler.functions", "templates")]
        if folder is not None:
            loaders.insert(0, jinja2.FileSystemLoader(folder))
        # Plain text, not HTML: each platform's sender escapes for its own format.
        self._env = jinja2.Environment(  # noqa: S701
            loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined, keep_trailing_newline=False
        )

    def render(self, outcome: str, context: dict[str, Any]) -> tuple[str, str]:
        """The title and the text for ``outcome``."""
        rendered = self._env.get_template(f"{outcome}.txt.j2").render(context).strip()
        title, _, text = rendered.partition("\n")
        return title.strip(), text.strip()


@dataclass(frozen=True)
class NotifyReport:
    outcome: str  # the event's outcome, or "ignored"
    sent: tuple[str, ...] = ()  # the channels that took it now
    skipped: tuple[str, ...] = ()  # the channels that had it before (a redelivery)


def _origin_text(origin: dict[str, str]) -> str:
    keys = ("source", "alertname", "ticket", "fingerprint", "receiver")
    return ", ".join(f"{k} {origin[k]}" for k in keys if origin.get(k))


class NotifyFunction:
    def __init__(
        self,
        senders: Sequence[Sender],
        *,
        outcomes: Sequence[str],
        templates: Templates,
        store: Store,
        keep_s: float,
        base_url: str | None = None,
    ) -> None:
        self._senders = list(senders)
        self._outcomes = frozenset(outcomes)
        self._templates = templates
        self._store = store
        self._keep_s = keep_s
        self._base_url = base_url.rstrip("/") if base_url else None

    def __call__(self, message: str | bytes | dict[str, Any]) -> NotifyReport:
        """Send one event to every channel that takes its outcome; ``InvalidInput`` for a message
        that is not an event of the results topic (dead-letter it), ``DeliveryFailed`` when a
        channel did not take it (retry it)."""
        event = load_object(message)
        kind = event.get("type")
        outcome = kind.removeprefix(_PREFIX) if isinstance(kind, str) and kind.startswith(_PREFIX) else None
        if outcome not in OUTCOMES:
            return NotifyReport("ignored")
        event_id = str(event.get("id") or "")
        if not event_id:
            raise InvalidInput("invalid result event", [FieldError("id", "missing")])
        targets = [s for s in self._senders if outcome in (s.config.outcomes or self._outcomes)]
        if not targets:
            return NotifyReport(outcome)
        notice = self.notice(event, outcome)
        sent, skipped, failures = [], [], []
        for sender in targets:
            mark = f"notified:{sender.config.name}:{event_id}"
            if self._store.holder(mark) is not None:
                skipped.append(sender.config.name)
                continue
            try:
                sender.send(notice)
            except DeliveryFailed as error:
                log_event(
                    "notify.failed", level=logging.WARNING, channel=sender.config.name, reason=str(error)
                )
                failures.append(str(error))
                continue
            self._store.acquire(mark, "sent", ttl_s=self._keep_s)
            sent.append(sender.config.name)
            log_event("notify.sent", channel=sender.config.name, outcome=outcome, event_id=event_id)
        if failures:
            raise DeliveryFailed("; ".join(failures))
        return NotifyReport(outcome, tuple(sent), tuple(skipped))

    def notice(self, event: dict[str, Any], outcome: str) -> Notice:
        """The message for ``event`` (``InvalidInput`` when its data is not what its type says)."""
        data = event.get("data")
        try:
            if event.get("type") == EVENT_APPROVAL_REQUESTED:
                approval = Approval.model_validate(data)
                context = self._approval_context(approval)
                link = event.get("approvalurl") or (
                    f"{self._base_url}/approvals/{approval.id}" if self._base_url else None
                )
                title, text = self._templates.render(outcome, context)
                return Notice(outcome, title, text, approval.id, str(link) if link else None)
            result = DetachResult.model_validate(data)
        except ValueError as error:  # pydantic's ValidationError
            raise InvalidInput(
                f"invalid {event.get('type')} event", [FieldError("data", str(error)[:300])]
            ) from None
        title, text = self._templates.render(outcome, self._result_context(result))
        return Notice(outcome, title, text, None, None)

    @staticmethod
    def _approval_context(approval: Approval) -> dict[str, Any]:
        request = approval.request
        return {
            **request.model_dump(mode="json"),
            "force": bool(request.delete_flag),
            "approval_id": approval.id,
            "preview": approval.preview.model_dump(mode="json"),
            "requested_by": approval.requested_by,
            "expires_at": approval.expires_at.isoformat(timespec="seconds"),
            "origin_text": _origin_text(request.origin),
        }

    @staticmethod
    def _result_context(result: DetachResult) -> dict[str, Any]:
        return {
            **result.model_dump(mode="json"),
            "duration": None if result.duration_s is None else round(result.duration_s),
            "origin_text": _origin_text(result.origin),
        }

"""The webhook routes, independent of any web framework.

``WebhookRouter.handle`` takes a request (method, path, headers, body) and returns a status,
headers and a JSON body. The Starlette app (``up``), the functions-framework target (containers)
and FunctionGraph's APIG trigger all adapt to it, so every way in behaves the same:

- ``POST /``: a detach request (JSON) or a CloudEvent (binary or structured mode);
- ``POST /alertmanager``, ``POST /grafana``, ``POST /smn``, ``POST /tickets/{mapping}``;
- ``GET``/``POST /approvals/{id}`` and the signed links ``/approvals/{id}/link/{token}``
  (``handler/entry/_approvals.py``): deciding the requests the approval policy holds;
- ``POST /chat/slack``, ``POST /chat/feishu``: chat buttons deciding them (``_chat.py``),
  authenticated by the platform's own signature.

A request's ``origin.credential`` is the identity of the credential that sent it (whatever the
body says), so four eyes can refuse that identity as its approver.

Every request is authenticated on its raw bytes before anything parses it (401 otherwise). An
``ecs-detach.accepted`` event on ``/smn`` goes to the poll function, and is authenticated as the
route ``poll``: only the jobs topic's own SMN signature, or a credential scoped to ``poll``.
Answers: the per-record report (202 if anything was accepted, 200 if there was nothing to do,
409 if the cloud refused all, 503 with ``Retry-After`` if something must be retried), or an
RFC 9457 problem document: 400 malformed, 401 unauthenticated, 403 a credential used outside
its routes, 404 unknown route or mapping, 405 wrong method, 413 too large (the body, or more
records than ``max_records``, refused before any cloud call), 415 unsupported content type,
422 invalid (every record, with field paths), 503 with ``Retry-After`` when the store, a topic
or the cloud does not answer.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from handler.cloud import ApiError, TransportError
from handler.core.models import EVENT_ACCEPTED, EVENT_APPROVAL_TURN, EVENT_QUEUED
from handler.core.validation import InvalidInput, MalformedInput, load_json
from handler.entry._approvals import ApprovalPath, approval_path, decide_json, link_page, show_json
from handler.entry._chat import ChatCallbacks
from handler.entry._problems import invalid_problem, problem, too_many_records
from handler.entry._smn import ConfirmationFailed
from handler.functions.approvals import ApprovalDesk
from handler.functions.batch import BatchReport, process
from handler.functions.detach import DetachFunction
from handler.security import APPROVALS, POLL, Principal, Refused, WebhookAuthenticator
from handler.sources import (
    LabelNames,
    TicketMapping,
    parse_alertmanager,
    parse_cloudevent_http,
    parse_grafana,
    parse_plain,
    parse_smn_http,
    parse_ticket,
)
from handler.sources._base import Parsed
from handler.store import StoreError
from handler.support.log import log_event
from handler.topics import TopicError

PROBLEM_JSON = "application/problem+json"
_ROUTES = ("/", "/alertmanager", "/grafana", "/smn")
_TICKETS = "/tickets/"
_CHAT = ("/chat/slack", "/chat/feishu")
# SMN's HTTP messages are JSON whatever content type they declare.
_JSON_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json")
# What a request meets when a dependency is down; answered 503 with Retry-After, never 500.
_UNAVAILABLE = (StoreError, TopicError, TransportError, ApiError)
_UNAVAILABLE_RETRY_S = 5


def _unavailable(error: Exception) -> str:
    """What is down, without the error's text (it may name hosts or carry what a broker said)."""
    what = {StoreError: "the idempotency store", TopicError: "a topic", TransportError: "the cloud API"}
    name = next((name for kind, name in what.items() if isinstance(error, kind)), "the cloud API")
    return f"{name} did not answer; try again later"


class Incoming(Protocol):
    """An HTTP request as any adapter hands it over (``WebRequest``, APIG's ``ApigRequest``)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...  # lower-cased names
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True)
class WebRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    html: str | None = None  # an HTML page instead of the JSON body (the approval links)

    @property
    def content_type(self) -> str:
        if self.html is not None:
            return "text/html; charset=utf-8"
        return PROBLEM_JSON if "title" in self.body and self.status >= 400 else "application/json"

    @property
    def text(self) -> str:
        """The body as sent: the HTML page, or the JSON document."""
        return self.html if self.html is not None else json.dumps(self.body)


def _problem(status: int, title: str, detail: str = "", **extra: Any) -> WebResponse:
    headers = {"Allow": "POST"} if status == 405 else {}
    return WebResponse(status, problem(status, title, detail, **extra), headers)


class WebhookRouter:
    def __init__(
        self,
        detach: DetachFunction,
        *,
        on_job: Callable[[dict[str, Any]], dict[str, Any]],
        authenticator: WebhookAuthenticator,
        labels: LabelNames,
        mappings: Mapping[str, TicketMapping],
        max_body_bytes: int,
        max_records: int,
        max_cloud_calls: int,
        confirm_subscription: Callable[[str], None],
        approvals: ApprovalDesk | None = None,
        chat: ChatCallbacks | None = None,
    ) -> None:
        self._detach = detach
        self._on_job = on_job
        self._authenticator = authenticator
        self._labels = labels
        self._mappings = mappings
        self._max_body_bytes = max_body_bytes
        self._max_records = max_records
        self._max_cloud_calls = max_cloud_calls
        self._confirm = confirm_subscription
        self._approvals = approvals
        self._chat = chat

    def handle(self, request: Incoming) -> WebResponse:
        path = request.path.rstrip("/") or "/"
        if path == APPROVALS or path.startswith(f"{APPROVALS}/"):
            return self._guarded(path, lambda: self._approval(request, path))
        if path in _CHAT:
            return self._guarded(path, lambda: self._chat_click(request, path))
        refused = self._refuse(request, path)
        if refused is not None:
            return refused
        # A push of the jobs topic (on SMN) is the poll function's: authenticated as ``poll``.
        job = _job_event(request.body) if path == "/smn" else None
        principal = self._authenticate(request, POLL if job is not None else path)
        if isinstance(principal, WebResponse):
            return principal
        refused = self._unknown_mapping(path) or _unsupported(request, path)
        if refused is not None:
            return refused
        return self._guarded(path, lambda: self._dispatch(path, request, job, principal.identity))

    def _guarded(self, path: str, answer: Callable[[], WebResponse]) -> WebResponse:
        """``answer()``, or 503 with Retry-After when a dependency is down."""
        try:
            return answer()
        except _UNAVAILABLE as error:  # a dependency is down: the sender tries again later
            log_event("webhook.unavailable", level=logging.WARNING, path=path, error=type(error).__name__)
            retry = str(_UNAVAILABLE_RETRY_S)
            return WebResponse(
                503, problem(503, "Service Unavailable", _unavailable(error)), {"Retry-After": retry}
            )

    def _dispatch(
        self, path: str, request: Incoming, job: dict[str, Any] | None, identity: str | None
    ) -> WebResponse:
        if job is not None:
            return self._poll(job)
        try:
            parsed = self._parse(path, request)
        except InvalidInput as error:
            status = 400 if isinstance(error, MalformedInput) else 422
            return WebResponse(status, invalid_problem(error, status))
        if parsed.confirm_url is not None:
            return self._confirm_subscription(parsed.source, parsed.confirm_url)
        return self._process(parsed, request.headers, identity)

    def _process(self, parsed: Parsed, headers: Mapping[str, str], identity: str | None) -> WebResponse:
        """The report of every record, or 413 (before any cloud call) when there are too many."""
        if len(parsed.records) > self._max_records:
            return WebResponse(413, too_many_records(len(parsed.records), self._max_records))
        keyed = _sent_by(_keyed_by_webhook_id(parsed, headers), identity)
        return _answer(process(keyed, self._detach, max_cloud_calls=self._max_cloud_calls))

    def _approval(self, request: Incoming, path: str) -> WebResponse:
        """The approval routes (``handler/entry/_approvals.py``)."""
        where = approval_path(path)
        refused = self._approval_refused(request, path, where)
        if refused is not None or where is None or self._approvals is None:
            return refused or _problem(404, "Not Found", f"no route {path}")
        if where.token is not None:  # the signed link is the credential
            page = link_page(self._approvals, where, request.method.upper(), request.body)
            return WebResponse(page.status, page.body, {"Cache-Control": "no-store"}, html=page.html)
        principal = self._authenticate(request, APPROVALS)
        if isinstance(principal, WebResponse):
            return principal
        if request.method.upper() == "GET":
            page = show_json(self._approvals, where.approval_id)
        else:
            unsupported = _unsupported(request, APPROVALS)
            if unsupported is not None:
                return unsupported
            page = decide_json(self._approvals, where.approval_id, request.body, principal.identity)
        return WebResponse(page.status, page.body)

    def _chat_click(self, request: Incoming, path: str) -> WebResponse:
        """A chat button's click: authenticated by its platform's signature (``_chat.py``)."""
        if self._chat is None:
            return _problem(404, "Not Found", "chat callbacks are off (approvals and a platform secret)")
        if request.method.upper() != "POST":
            return _problem(405, "Method Not Allowed", f"{path} accepts POST only")
        if len(request.body) > self._max_body_bytes:
            return _problem(413, "Content Too Large", f"body over {self._max_body_bytes} bytes")
        click = self._chat.slack if path == "/chat/slack" else self._chat.feishu
        answer = click(request.headers, request.body)
        return WebResponse(answer.status, answer.body)

    def _approval_refused(
        self, request: Incoming, path: str, where: ApprovalPath | None
    ) -> WebResponse | None:
        """Route, method and size, before authentication (like ``_refuse``)."""
        if self._approvals is None:
            return _problem(404, "Not Found", "approvals are off (ECS_DETACH_APPROVAL_MODE=never)")
        if where is None:
            return _problem(404, "Not Found", f"no route {path}: /approvals/{{id}}[/link/{{token}}]")
        if request.method.upper() not in ("GET", "POST"):
            detail = f"{path} accepts GET and POST"
            return WebResponse(405, problem(405, "Method Not Allowed", detail), {"Allow": "GET, POST"})
        if len(request.body) > self._max_body_bytes:
            return _problem(413, "Content Too Large", f"body over {self._max_body_bytes} bytes")
        return None

    def _poll(self, job: dict[str, Any]) -> WebResponse:
        try:
            return WebResponse(200, self._on_job(job))
        except InvalidInput as error:
            return WebResponse(422, invalid_problem(error))

    def _refuse(self, request: Incoming, path: str) -> WebResponse | None:
        """The answer for a request that cannot be taken at all: route, method, size. Checked
        before authentication, so it says nothing about the configuration."""
        if path not in _ROUTES and not path.startswith(_TICKETS):
            known = f"{', '.join(_ROUTES)} or {_TICKETS}{{mapping}}"
            return _problem(404, "Not Found", f"no route {path}; POST to {known}")
        if request.method.upper() != "POST":
            return _problem(405, "Method Not Allowed", f"{path} accepts POST only")
        if len(request.body) > self._max_body_bytes:
            return _problem(413, "Content Too Large", f"body over {self._max_body_bytes} bytes")
        return None

    def _unknown_mapping(self, path: str) -> WebResponse | None:
        """Only an authenticated caller learns which ticket mappings are configured."""
        if path.startswith(_TICKETS) and path.removeprefix(_TICKETS) not in self._mappings:
            known = ", ".join(sorted(self._mappings))
            return _problem(
                404, "Not Found", f"no ticket mapping {path.removeprefix(_TICKETS)!r}; known: {known}"
            )
        return None

    def _authenticate(self, request: Incoming, path: str) -> Principal | WebResponse:
        """Who sent the request, or the refusal; checked on the raw bytes, before anything
        parses them."""
        try:
            return self._authenticator.authenticate(path, request.headers, request.body)
        except Refused as refused:
            if refused.status == 403:  # a credential verified, but this route is outside its scope
                return _problem(403, "Forbidden", refused.reason)
            unauthorized = _problem(401, "Unauthorized", refused.reason)
            # RFC 9110 §15.5.2: a 401 carries at least one challenge.
            unauthorized.headers["WWW-Authenticate"] = self._authenticator.challenge(path, request.headers)
            return unauthorized

    def _confirm_subscription(self, source: str, url: str) -> WebResponse:
        try:
            self._confirm(url)
        except InvalidInput as error:
            return WebResponse(422, invalid_problem(error))
        except ConfirmationFailed as error:
            return _problem(502, "Bad Gateway", f"the subscription confirmation failed: {error}")
        return WebResponse(200, {"source": source, "confirmed": True})

    def _parse(self, path: str, request: Incoming) -> Parsed:
        if path == "/alertmanager":
            return parse_alertmanager(request.body, self._labels)
        if path == "/grafana":
            return parse_grafana(request.body, self._labels)
        if path == "/smn":
            return parse_smn_http(request.headers, request.body)
        if path.startswith(_TICKETS):
            return parse_ticket(request.body, self._mappings[path.removeprefix(_TICKETS)])
        if "ce-specversion" in request.headers or "cloudevents" in request.headers.get("content-type", ""):
            return parse_cloudevent_http(request.headers, request.body)
        return parse_plain(request.body)


def _keyed_by_webhook_id(parsed: Parsed, headers: Mapping[str, str]) -> Parsed:
    """A Standard Webhooks sender names each delivery (``webhook-id``, the same on its retries):
    requests without their own idempotency key get ``webhook:{id}`` (``:{ref}`` in a batch)."""
    webhook_id = headers.get("webhook-id", "").strip()
    if not webhook_id or len(webhook_id) > 200:
        return parsed
    several = len(parsed.records) > 1
    records = []
    for record in parsed.records:
        request = record.request
        if request is not None and request.idempotency_key is None:
            key = f"webhook:{webhook_id}" + (f":{record.ref}" if several else "")
            record = record._replace(request=request.model_copy(update={"idempotency_key": key}))  # noqa: PLW2901
        records.append(record)
    return parsed._replace(records=records)


def _sent_by(parsed: Parsed, identity: str | None) -> Parsed:
    """Each request names the credential that sent it (``origin.credential``), replacing what a
    body may claim: the identity four eyes keeps from approving it."""
    records = []
    for record in parsed.records:
        request = record.request
        if request is not None and (identity is not None or "credential" in request.origin):
            origin = {k: v for k, v in request.origin.items() if k != "credential"}
            if identity is not None:
                origin["credential"] = identity
            record = record._replace(request=request.model_copy(update={"origin": origin}))  # noqa: PLW2901
        records.append(record)
    return parsed._replace(records=records)


def _job_event(body: bytes) -> dict[str, Any] | None:
    """The jobs-topic event (``ecs-detach.accepted`` or ``.queued``) an SMN notification
    carries, if it carries one."""
    try:
        notification = load_json(body)
        event = load_json(notification["message"]) if notification.get("type") == "Notification" else None
    except (MalformedInput, TypeError, KeyError, AttributeError):
        return None
    kinds = (EVENT_ACCEPTED, EVENT_QUEUED, EVENT_APPROVAL_TURN)
    return event if isinstance(event, dict) and event.get("type") in kinds else None


def _unsupported(request: Incoming, path: str) -> WebResponse | None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if path == "/smn" or content_type in _JSON_TYPES or content_type.endswith("+json"):
        return None
    if path == "/" and not content_type and "ce-specversion" in request.headers:
        return None  # a binary-mode CloudEvent need not name its data's type (CloudEvents 1.0)
    expected = "application/json" + (" or a binary-mode CloudEvent (ce-* headers)" if path == "/" else "")
    return _problem(415, "Unsupported Media Type", f"expected {expected}, got {content_type or 'none'}")


def _answer(report: BatchReport) -> WebResponse:
    status = report.http_status()
    if status == 422:
        return WebResponse(
            422,
            problem(422, "No valid detach request", f"all {len(report.records)} record(s) are invalid")
            | {"records": [r.as_dict() for r in report.records]},
        )
    headers = {}
    if status == 503:
        headers["Retry-After"] = str(math.ceil(report.retry_after_s or _UNAVAILABLE_RETRY_S))
    return WebResponse(status, report.as_dict(), headers)

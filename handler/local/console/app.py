"""The console's routes, independent of the web framework that serves them.

``Console.handle`` takes a request (method, path, query string, headers, body) and answers a
page. ``starlette_route`` mounts it on a Starlette app (``up``, the worker); the container's
functions-framework target hands it Flask's request (``handler/local/container.py``).

Pages (GET): ``/console`` (the requests, searchable and paged), ``/console/request?id=…`` (one
request's whole trail), ``/console/inflight``, ``/console/approvals``, ``/console/safety``,
``/console/plots``, and ``/console/static/console.css``. The one change a viewer can make is
``POST /console/approvals/{id}`` (a form: ``decision``, ``comment``, ``token``), which decides
through the approval desk, with four eyes.

Every answer carries a strict Content-Security-Policy (no script at all, styles from the
console's own stylesheet only), and every text is escaped by Jinja2's autoescape. Input that
does not fit answers 4xx naming the parameter; a history, store or topic that does not answer
is a 503 page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, StrictUndefined

from handler.core.approval import preview_rows
from handler.core.validation import FieldError, InvalidInput
from handler.history import OUTCOMES, HistoryError, Query
from handler.local.console import _views as views
from handler.local.console._auth import CHALLENGE, ConsoleAuth, Refusal, Viewer
from handler.security import WebhookAuthenticator
from handler.store import StoreError
from handler.support.log import log_event
from handler.topics import TopicError

if TYPE_CHECKING:
    from starlette.datastructures import URLPath
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from handler.entry.runtime import Runtime
    from handler.functions.approvals import ApprovalDesk
    from handler.guards.blast import BlastRadius
    from handler.settings import Settings

PREFIX = "/console"
# What the pages need, and nothing more: the one stylesheet, forms posting to the console. No
# script, no inline style, no image (the plots are inline SVG elements, fetched from nowhere).
CSP = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",  # no other site's window keeps a handle on it
    "Cross-Origin-Resource-Policy": "same-origin",  # no other site loads a page or the stylesheet
    "Cache-Control": "no-store",  # pages carry form tokens and what the history holds
}
_HTML = "text/html; charset=utf-8"
_FORM = "application/x-www-form-urlencoded"
_DECIDE = re.compile(r"^/console/approvals/(?P<id>[0-9a-f]{32})$")
_MAX_TEXT = 200
_MAX_PAGE = 10_000
_MAX_PARAMS = 20
_UNAVAILABLE = (HistoryError, StoreError, TopicError)


@dataclass(frozen=True)
class ConsoleRequest:
    method: str
    path: str
    query: str  # the raw query string
    headers: Mapping[str, str]  # lower-cased names
    body: bytes = b""
    client: str | None = None  # the address the request came from (a proxy's, behind one)


@dataclass(frozen=True)
class ConsoleResponse:
    status: int
    body: bytes
    content_type: str = _HTML
    headers: dict[str, str] = field(default_factory=dict)


def _bad(name: str, reason: str) -> InvalidInput:
    """A parameter that does not fit: answered 400, naming it."""
    return InvalidInput("invalid input", [FieldError(name, reason)])


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _offset(value: float) -> str:
    return f"+{value:.3f} s"


def _when(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


class Console:
    def __init__(
        self,
        settings: Settings,
        *,
        auth: ConsoleAuth,
        reader: views.HistoryReader,
        blast: BlastRadius,
        desk: ApprovalDesk | None,
        clock: Callable[[], datetime] = views.utcnow,
    ) -> None:
        self._settings = settings
        self._auth = auth
        self._reader = reader
        self._blast = blast
        self._desk = desk
        self._clock = clock
        self._env = Environment(
            loader=PackageLoader("handler.local.console", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(seconds=_seconds, offset=_offset, when=_when, field_text=views.field_text)
        self._env.globals.update(step_summary=views.step_summary, preview_rows=preview_rows)
        self._css = files("handler.local.console").joinpath("static/console.css").read_bytes()

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> Console:
        """The console of a runtime: its settings, store, approval desk and history."""
        from handler.entry.runtime import blast_radius  # noqa: PLC0415 (no cycle at import time)

        settings = runtime.full_settings
        secret = settings.console_secret
        auth = ConsoleAuth(
            settings.console_users,
            WebhookAuthenticator(settings.webhook_auth()),
            auth_disabled=settings.webhook_auth_disabled,
            secret=secret.get_secret_value().encode() if secret is not None else None,
        )
        console = cls(
            settings,
            auth=auth,
            reader=views.HistoryReader(settings.history_url()),
            blast=blast_radius(settings, runtime.store),
            desk=runtime.detach.approvals,
        )
        runtime.on_close(console.close)
        return console

    def close(self) -> None:
        self._reader.close()

    # -- the request ---------------------------------------------------------------------------

    def handle(self, request: ConsoleRequest) -> ConsoleResponse:
        sub = request.path.removeprefix(PREFIX).rstrip("/")
        decide = _DECIDE.match(request.path.rstrip("/"))
        refused = self._refused(request, sub, decide is not None)
        if refused is not None:
            return refused
        viewer = self._auth.viewer(request.headers, request.client)
        if isinstance(viewer, Refusal):
            title = {401: "Log in", 429: "Too many failed logins"}.get(viewer.status, "Forbidden")
            answer = self._error(viewer.status, title, viewer.reason)
            if viewer.status == 401:
                answer.headers["WWW-Authenticate"] = CHALLENGE
            if viewer.retry_after_s is not None:
                answer.headers["Retry-After"] = str(viewer.retry_after_s)
            return answer
        if sub == "/static/console.css":
            headers = {**_SECURITY_HEADERS, "Cache-Control": "private, max-age=300"}
            return ConsoleResponse(200, self._css, "text/css; charset=utf-8", headers)
        return self._answer(viewer, request, sub, decide)

    def _answer(
        self, viewer: Viewer, request: ConsoleRequest, sub: str, decide: re.Match[str] | None
    ) -> ConsoleResponse:
        """The page or the decision; 400 for input that does not fit, 503 when what it reads
        does not answer."""
        try:
            if decide is not None:
                return self._decide(viewer, request, decide["id"])
            return self._pages[sub](viewer, _query(request.query), self._clock())
        except InvalidInput as error:
            detail = "; ".join(f"{e.field}: {e.reason}" for e in error.errors)
            return self._error(400, "Bad request", detail, viewer)
        except _UNAVAILABLE as error:
            what = "the history" if isinstance(error, HistoryError) else "the store or a topic"
            log_event(
                "console.unavailable", level=logging.WARNING, path=request.path, error=type(error).__name__
            )
            answer = self._error(503, "Unavailable", f"{what} did not answer; try again shortly", viewer)
            answer.headers["Retry-After"] = "5"
            return answer

    def _refused(self, request: ConsoleRequest, sub: str, decide: bool) -> ConsoleResponse | None:
        """404 for a page that is not there, 405 for a method it does not take (before anyone
        is asked to log in)."""
        if sub not in (*self._pages, "/static/console.css") and not decide:
            return self._error(404, "Not found", f"no console page {request.path}")
        allowed = ("POST",) if decide else ("GET", "HEAD")
        if request.method.upper() not in allowed:
            answer = self._error(405, "Method not allowed", f"{request.path} accepts {', '.join(allowed)}")
            answer.headers["Allow"] = ", ".join(allowed)
            return answer
        return None

    @property
    def _pages(self) -> dict[str, Callable[[Viewer, dict[str, list[str]], datetime], ConsoleResponse]]:
        return {
            "": self._requests,
            "/request": self._trail,
            "/inflight": self._in_flight,
            "/approvals": self._approvals,
            "/safety": self._safety,
            "/plots": self._plots,
        }

    def _requests(self, viewer: Viewer, query: dict[str, list[str]], _: datetime) -> ConsoleResponse:
        text = _param(query, "q", _MAX_TEXT)
        outcome = _param(query, "outcome", 40)
        if outcome and outcome not in OUTCOMES:
            raise _bad("outcome", f"must be one of {', '.join(OUTCOMES)}")
        page = _page_number(_param(query, "page", 10) or "1")
        listing = views.requests_page(self._reader, text=text or None, outcome=outcome or None, page=page)
        return self._render(
            "requests.html", viewer, "requests", listing=listing, q=text, outcome=outcome, outcomes=OUTCOMES
        )

    def _trail(self, viewer: Viewer, query: dict[str, list[str]], _: datetime) -> ConsoleResponse:
        trail_id = _param(query, "id", 300)
        if not trail_id:
            raise _bad("id", "the request's trail id is required")
        found = self._reader.query(Query(trail=trail_id, limit=1))
        if not found:
            return self._error(404, "Not found", f"no request {trail_id} in the history", viewer)
        return self._render("trail.html", viewer, "requests", trail=found[0])

    def _in_flight(self, viewer: Viewer, _: dict[str, list[str]], now: datetime) -> ConsoleResponse:
        flight = views.in_flight(self._reader, self._settings, now)
        return self._render("inflight.html", viewer, "inflight", flight=flight, now=now)

    def _approvals(self, viewer: Viewer, _: dict[str, list[str]], now: datetime) -> ConsoleResponse:
        listed = views.approvals(self._desk.recent(200)) if self._desk is not None else None
        token = self._auth.token(viewer) if viewer.can_approve else ""
        return self._render("approvals.html", viewer, "approvals", approvals=listed, token=token, now=now)

    def _safety(self, viewer: Viewer, _: dict[str, list[str]], now: datetime) -> ConsoleResponse:
        state = views.safety(self._reader, self._blast, self._settings, now)
        return self._render("safety.html", viewer, "safety", safety=state)

    def _plots(self, viewer: Viewer, _: dict[str, list[str]], now: datetime) -> ConsoleResponse:
        return self._render("plots.html", viewer, "plots", plots=views.plots(self._reader, now))

    def _decide(self, viewer: Viewer, request: ConsoleRequest, approval_id: str) -> ConsoleResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != _FORM:
            return self._error(
                415, "Unsupported form", f"expected {_FORM}, got {content_type or 'none'}", viewer
            )
        try:
            form = parse_qs(request.body.decode("utf-8"), max_num_fields=5)
        except (UnicodeDecodeError, ValueError):
            raise _bad("form", "not a UTF-8 form of at most 5 fields") from None
        refused = self._auth.form_refused(viewer, request.headers, _param(form, "token", 200))
        if refused is not None:
            log_event("console.form_refused", level=logging.WARNING, approval_id=approval_id, reason=refused)
            return self._error(403, "Refused", refused, viewer)
        if not viewer.can_approve or viewer.identity is None:
            return self._error(403, "Refused", "you may read the console, not decide approvals", viewer)
        if self._desk is None:
            return self._error(404, "Not found", "approvals are off (ECS_DETACH_APPROVAL_MODE=never)", viewer)
        decision = _param(form, "decision", 10)
        if decision not in ("approve", "deny"):
            raise _bad("decision", "must be approve or deny")
        comment = _param(form, "comment", 1024).strip() or None
        answer = self._desk.decide(
            approval_id, approve=decision == "approve", by=viewer.identity, comment=comment
        )
        return self._render(
            "decided.html",
            viewer,
            "approvals",
            status=answer.http_status,
            answer=answer,
            approval_id=approval_id,
        )

    # -- answers -------------------------------------------------------------------------------

    def _render(
        self, template: str, viewer: Viewer, tab: str, *, status: int = 200, **context: Any
    ) -> ConsoleResponse:
        page = self._env.get_template(template).render(
            viewer=viewer, tab=tab, history=self._reader.enabled, **context
        )
        return ConsoleResponse(status, page.encode(), headers=dict(_SECURITY_HEADERS))

    def too_large(self, max_bytes: int) -> ConsoleResponse:
        """The answer to a form larger than ``max_bytes`` (its server reads no more of it)."""
        return self._error(413, "Form too large", f"form: at most {max_bytes} bytes")

    def _error(self, status: int, title: str, detail: str, viewer: Viewer | None = None) -> ConsoleResponse:
        return self._render(
            "error.html", viewer or Viewer(None, False), "", status=status, title=title, detail=detail
        )


def _param(query: Mapping[str, list[str]], name: str, max_length: int) -> str:
    value = (query.get(name) or [""])[0]
    if len(value) > max_length:
        raise _bad(name, f"at most {max_length} characters")
    return value


def _query(raw: str) -> dict[str, list[str]]:
    try:
        return parse_qs(raw, max_num_fields=_MAX_PARAMS)
    except ValueError:  # more fields than that
        raise _bad("query", f"too many parameters (at most {_MAX_PARAMS})") from None


def _page_number(text: str) -> int:
    # ASCII digits only: str.isdigit() takes "²", which int() refuses
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= _MAX_PAGE:
        raise _bad("page", f"a whole number from 1 to {_MAX_PAGE}")
    return int(text)


# -- serving it ---------------------------------------------------------------------------------


def _starlette_response(request: Request, answer: ConsoleResponse) -> Response:
    from starlette.responses import Response  # noqa: PLC0415

    content = b"" if request.method == "HEAD" else answer.body
    return Response(
        content, status_code=answer.status, headers=answer.headers, media_type=answer.content_type
    )


def starlette_route(console: Console, max_body_bytes: int) -> list[BaseRoute]:
    """The console's route for a Starlette app: every path under ``/console`` (a newline in it
    included, which Starlette's path patterns do not match) and every method, so that
    ``Console.handle`` answers each, with the console's headers."""
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.routing import BaseRoute, Match, NoMatchFound  # noqa: PLC0415
    from starlette.types import Receive, Scope, Send  # noqa: PLC0415

    async def serve(request: Request) -> Response:
        body = bytearray()
        if request.method == "POST":
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    return _starlette_response(request, console.too_large(max_body_bytes))
        headers = {name.lower(): value for name, value in request.headers.items()}
        client = request.client.host if request.client is not None else None
        incoming = ConsoleRequest(
            request.method, request.url.path, request.url.query, headers, bytes(body), client
        )
        return _starlette_response(request, await run_in_threadpool(console.handle, incoming))

    class ConsoleRoute(BaseRoute):
        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            path = str(scope.get("path", ""))
            under = scope["type"] == "http" and (path == PREFIX or path.startswith(f"{PREFIX}/"))
            return (Match.FULL, {}) if under else (Match.NONE, {})

        def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
            raise NoMatchFound(name, path_params)

        async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
            response = await serve(Request(scope, receive))
            await response(scope, receive, send)

    return [ConsoleRoute()]

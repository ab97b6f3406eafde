"""The approval routes of the webhook router (docs/approvals.md):

* ``GET /approvals/{id}``: the approval (JSON), for a credential whose routes name ``/approvals``;
* ``POST /approvals/{id}`` ``{"decision": "approve" | "deny", "comment": "…"}``: decide it as that
  credential's identity;
* ``GET /approvals/{id}/link/{token}``: the confirmation page of a signed link (it changes
  nothing: chat previews and mail scanners open links);
* ``POST /approvals/{id}/link/{token}`` (a form: ``decision``, ``comment``): decide it as the
  identity the link was made for.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from handler.core.approval import Approval, ApprovalState, LinkRefused, preview_rows
from handler.core.validation import FieldError, InvalidInput, MalformedInput, load_object
from handler.entry._problems import invalid_problem, problem
from handler.functions.approvals import ApprovalDesk, DecisionAnswer, summary

_PATH = re.compile(r"^/approvals/(?P<id>[0-9a-f]{32})(?:/link/(?P<token>[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+))?$")
_DECISIONS = {"approve": True, "deny": False}


@dataclass(frozen=True)
class ApprovalPath:
    approval_id: str
    token: str | None  # a signed link's


def approval_path(path: str) -> ApprovalPath | None:
    """The approval (and link token) a path names; None when it names none."""
    found = _PATH.match(path)
    return ApprovalPath(found["id"], found["token"]) if found else None


@dataclass(frozen=True)
class Page:
    """What an approval route answers: JSON, or an HTML page (``html``)."""

    status: int
    body: dict[str, Any]
    html: str | None = None


def decision_of(body: bytes) -> tuple[bool, str | None]:
    """The decision and comment of a JSON body; ``InvalidInput`` with the field otherwise."""
    data = load_object(body)
    decision, comment = data.get("decision"), data.get("comment")
    if not isinstance(decision, str) or decision not in _DECISIONS:
        raise InvalidInput("invalid decision", [FieldError("decision", "must be 'approve' or 'deny'")])
    if comment is not None and (not isinstance(comment, str) or len(comment) > 1024):
        raise InvalidInput("invalid decision", [FieldError("comment", "a string of at most 1024 characters")])
    return _DECISIONS[str(decision)], comment


def _form_decision(body: bytes) -> tuple[bool, str | None]:
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=4, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise MalformedInput("the form is not application/x-www-form-urlencoded UTF-8", []) from None
    decision = (form.get("decision") or [""])[0]
    if decision not in _DECISIONS:
        raise InvalidInput("invalid decision", [FieldError("decision", "must be 'approve' or 'deny'")])
    comment = (form.get("comment") or [""])[0].strip()[:1024] or None
    return _DECISIONS[decision], comment


def decide_json(desk: ApprovalDesk, approval_id: str, body: bytes, identity: str | None) -> Page:
    """``POST /approvals/{id}`` by an authenticated credential."""
    try:
        approve, comment = decision_of(body)
    except InvalidInput as error:
        status = 400 if isinstance(error, MalformedInput) else 422
        return Page(status, invalid_problem(error, status))
    answer = desk.decide(approval_id, approve=approve, by=identity or "", comment=comment)
    return _json(answer)


def show_json(desk: ApprovalDesk, approval_id: str) -> Page:
    approval = desk.get(approval_id)
    if approval is None:
        return Page(404, problem(404, "Not Found", f"no approval {approval_id}"))
    return Page(200, summary(approval))


def _json(answer: DecisionAnswer) -> Page:
    if answer.http_status >= 400:
        extra = {"approval": summary(answer.approval)} if answer.approval is not None else {}
        title = {403: "Forbidden", 404: "Not Found", 409: "Conflict"}[answer.http_status]
        return Page(answer.http_status, problem(answer.http_status, title, answer.detail, **extra))
    return Page(answer.http_status, answer.as_dict())


def link_page(desk: ApprovalDesk, where: ApprovalPath, method: str, body: bytes) -> Page:
    """The signed link: GET shows the approval and the buttons, POST decides."""
    assert where.token is not None
    try:
        who = desk.link_identity(where.approval_id, where.token)
    except LinkRefused as refused:
        return _html(401, "Link refused", f"<p>{html.escape(str(refused))}.</p>")
    approval = desk.get(where.approval_id)
    if approval is None:
        return _html(404, "No such approval", "<p>This approval is not kept any more.</p>")
    if method == "GET":
        return _html(200, "Detach approval", _describe(approval) + _buttons(approval, who))
    try:
        approve, comment = _form_decision(body)
    except InvalidInput as error:
        return _html(422, "Not decided", f"<p>{html.escape(error.summary)}: choose approve or deny.</p>")
    answer = desk.decide(where.approval_id, approve=approve, by=who, comment=comment)
    after = answer.approval or approval
    return _html(
        answer.http_status,
        "Detach approval",
        f"<p><b>{html.escape(answer.detail)}</b></p>" + _describe(after),
    )


def _describe(approval: Approval) -> str:
    state = approval.state.value + (f" by {approval.decided_by}" if approval.decided_by else "")
    rows = [("State", state), *preview_rows(approval)]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _buttons(approval: Approval, who: str) -> str:
    if approval.state is not ApprovalState.PENDING:
        return "<p>This approval is decided: the link does nothing more.</p>"
    return (
        f"<p>Deciding as <b>{html.escape(who)}</b>.</p>"
        '<form method="post"><p><label>Comment <input name="comment" maxlength="1024"></label></p>'
        '<button name="decision" value="approve">Approve</button> '
        '<button name="decision" value="deny">Deny</button></form>'
    )


def _html(status: int, title: str, content: str) -> Page:
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{content}</body></html>"
    )
    return Page(status, {}, page)

"""When a person must say yes before a detach, and what they are shown: pure decision logic.

The approval policy (``handler.core.approval_policy``) decides per request (``ApprovalPolicy.mode``):

* ``never`` (the default): no request waits for anyone, the behaviour without approvals;
* ``always``: every request that passes the safety policy waits for an approval;
* ``rules``: a request waits when one of the rules matches (force detach, a shared disk, the
  system disk of a stopped server, a server carrying one of the tags, one of the projects,
  more than N disks of one server within a window).

A request that waits is shown to its approver as an ``Approval``: the request, a preview of what
the cloud said (server name and status, the disk's device, size, type, shared or not), the
safety checks that passed, the rules that asked for the approval, who asked, and what will
happen. Four eyes: nobody who asked for a request (``requesters``) may decide it.

The signed link (``sign_link``/``read_link``) is an HMAC-SHA256 over the approval id, the
identity it was made for and its expiry: whoever holds it may decide that one approval as that
identity until it expires; the approval's own state makes it one-time.

Nothing here reads the cloud, the store or the clock: the callers pass what they read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from handler.core.approval_policy import ApprovalPolicy
from handler.core.models import DetachRequest
from handler.core.policy import STOPPED, SafetyPolicy
from handler.core.resources import Server, Volume
from handler.errors import EcsDetachError

# The origin entries that name who asked for a request: the webhook credential (set by the
# router), a ticket's reporter (a mapping's ``origin.reporter``), an alert's receiver.
REQUESTER_KEYS = ("credential", "reporter", "receiver", "requested_by")


class ApprovalFacts(NamedTuple):
    """What the cloud and the store said about the request, read by the detach function."""

    project_id: str
    server: Server
    volume: Volume
    device: str | None
    system_disk: bool
    shared: bool
    recent_disks: int  # other disks of this server that went ahead within the rules' window


def approval_rules(request: DetachRequest, facts: ApprovalFacts, policy: ApprovalPolicy) -> list[str]:
    """Why ``request`` must wait for an approval (the rules that match); empty: it need not."""
    if policy.mode == "never":
        return []
    if policy.mode == "always":
        return ["every detach needs an approval (mode always)"]
    rules = policy.rules
    matched: list[str] = []
    if rules.force and request.delete_flag:
        matched.append("force detach")
    if rules.shared_disk and facts.shared:
        matched.append("shared disk")
    if rules.system_disk_stopped and facts.system_disk and facts.server.status == STOPPED:
        matched.append("system disk of a stopped server")
    matched += [f"server tag {tag}" for tag in rules.server_tags if tag in facts.server.tags]
    if facts.project_id in rules.projects:
        matched.append(f"project {facts.project_id}")
    limit = rules.max_disks_per_server
    if limit is not None and facts.recent_disks >= limit:
        matched.append(
            f"more than {limit} disk(s) of server {facts.server.id} within {rules.window_s:g} s"
            f" ({facts.recent_disks} before this one)"
        )
    return matched


def passed_checks(request: DetachRequest, facts: ApprovalFacts, policy: SafetyPolicy) -> list[str]:
    """The safety policy's checks this request passed, as a person reads them."""
    checks = []
    if policy.allowed_projects:
        checks.append(f"project {facts.project_id} is allowed")
    if policy.allowed_servers:
        checks.append(f"server {request.server_id} is allowed")
    if policy.required_tag:
        checks.append(f"server carries the required tag {policy.required_tag}")
    checks.append(
        "system disk of a stopped server, allowed by the policy"
        if facts.system_disk
        else "not the system disk"
    )
    checks.append("shared disk, allowed by the policy" if facts.shared else "not shared with another server")
    if request.delete_flag:
        checks.append("force detach, allowed by the policy")
    checks.append(f"attached to server {request.server_id}")
    return checks


class ApprovalState(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # its request was taken over by a later request with the same key


class Preview(BaseModel):
    """What the cloud said just before the request was kept for an approval."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    server_name: str | None
    server_status: str
    device: str | None
    size_gb: int | None
    volume_type: str | None
    shared: bool
    system_disk: bool
    checks_passed: list[str]
    approval_rules: list[str]
    will: str = Field(description="What happens when it is approved")


class Approval(BaseModel):
    """A request waiting for (or decided by) a person: kept durably, published as
    ``ecs-detach.approval_requested`` on the results topic."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: str
    key: str = Field(description="The request's idempotency key")
    request: DetachRequest
    preview: Preview
    requested_by: list[str] = Field(description="Identities that asked: none of them may approve")
    by_device: bool = Field(default=False, description="The request named its disk by device, not volume")
    state: ApprovalState = ApprovalState.PENDING
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    outcome: str | None = Field(default=None, description="What became of the request once decided")

    @property
    def subject(self) -> str:
        return self.request.subject


class Decision(NamedTuple):
    approve: bool
    by: str
    comment: str | None
    at: datetime

    @property
    def state(self) -> ApprovalState:
        return ApprovalState.APPROVED if self.approve else ApprovalState.DENIED


def preview_rows(approval: Approval) -> list[tuple[str, str]]:
    """What the approver sees before deciding (as the signed link's page shows it)."""
    request, preview = approval.request, approval.preview
    size = f"{preview.size_gb} GB" if preview.size_gb is not None else "? GB"
    return [
        ("Server", f"{preview.server_name or ''} {request.server_id} ({preview.server_status})".strip()),
        ("Disk", f"{request.volume_id} at {preview.device or '?'}"),
        ("Size / type", f"{size}, {preview.volume_type or '?'}"),
        ("Shared", "yes" if preview.shared else "no"),
        ("Force", "yes" if request.delete_flag else "no"),
        ("Reason", request.reason or ""),
        ("Asked by", ", ".join(approval.requested_by) or "unknown"),
        ("Origin", ", ".join(f"{k}={v}" for k, v in sorted(request.origin.items()))),
        ("Why an approval", "; ".join(preview.approval_rules)),
        ("Checks passed", "; ".join(preview.checks_passed)),
        ("What will happen", preview.will),
        ("Expires", approval.expires_at.isoformat()),
    ]


def identity(value: str) -> str:
    """Identities compare without case or surrounding blanks."""
    return value.strip().casefold()


def requesters(request: DetachRequest) -> list[str]:
    """Who asked for ``request``, from its origin (``REQUESTER_KEYS``)."""
    found = [request.origin[key] for key in REQUESTER_KEYS if request.origin.get(key, "").strip()]
    return list(dict.fromkeys(found))


def self_approval(approver: str, approval: Approval) -> bool:
    """Four eyes: whether ``approver`` is one of those who asked."""
    mine = identity(approver)
    return any(identity(asked) == mine for asked in approval.requested_by)


def what_will_happen(request: DetachRequest, preview_device: str | None) -> str:
    force = " by force (delete_flag=1)" if request.delete_flag else ""
    at = f" at {preview_device}" if preview_device else ""
    return (
        f"volume {request.volume_id}{at} is detached{force} from server {request.server_id}"
        f" in project {request.project_id}, after the policy and the disk are checked again"
    )


# -- the signed link -------------------------------------------------------------------------


class LinkRefused(EcsDetachError):
    """The link is malformed, forged, for another approval, or expired (a reason for the page)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"ecs-detach-approval-link\n" + payload, hashlib.sha256).digest()


def sign_link(secret: bytes, approval_id: str, who: str, expires: int) -> str:
    """A token for the link ``/approvals/{id}/link/{token}``: ``who`` may decide approval
    ``approval_id`` until ``expires`` (Unix seconds)."""
    payload = json.dumps([approval_id, who, expires], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def read_link(secret: bytes, approval_id: str, token: str, now: float) -> str:
    """The identity the link was made for, or ``LinkRefused``."""
    encoded, dot, signature = token.partition(".")
    try:
        payload, mac = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        raise LinkRefused("the link is malformed") from None
    if not dot or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise LinkRefused("the link's signature does not verify")
    try:
        linked_id, who, expires = json.loads(payload)
    except (ValueError, TypeError):
        raise LinkRefused("the link is malformed") from None
    if not (isinstance(linked_id, str) and isinstance(who, str) and isinstance(expires, int)):
        raise LinkRefused("the link is malformed")
    if linked_id != approval_id:
        raise LinkRefused("the link is for another approval")
    if now >= expires:
        raise LinkRefused("the link has expired")
    return who

"""Chat buttons coming back: ``POST /chat/slack`` and ``POST /chat/feishu`` (docs/notifications.md).

Each click is verified as its platform signs it before anything else is read, refused with 401
when the signature is wrong, stale (more than 5 minutes from now) or replayed (the same
signature seen before: kept in the store for 10 minutes), then the clicking user is mapped to
an approver identity through the allowlist of the chat it came from (``ECS_DETACH_CHAT_APPROVERS``:
``{"slack:C0123": {"U0456": "alice"}, "feishu:oc_…": {"ou_…": "bob"}}``); a user not listed
decides nothing. The decision is the approval desk's (four eyes, once), fast enough for the
platforms' 3-second limits: a store write and a publish.

* Slack: ``X-Slack-Signature`` = ``v0=`` + hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{body}``
  with the app's signing secret; the body is a form with ``payload``, a ``block_actions`` JSON.
* Feishu/Lark: ``X-Lark-Signature`` = hex SHA-256 of ``{timestamp}{nonce}{encrypt key}{body}``
  (``X-Lark-Request-Timestamp``, ``X-Lark-Request-Nonce``); an ``encrypt`` body is AES-256-CBC
  with the SHA-256 of the encrypt key (the IV first); the verification token must match; a
  ``url_verification`` is answered with its challenge; a ``card.action.trigger`` (schema 2.0)
  carries the button's value, the operator and the chat.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from handler.functions.approvals import ApprovalDesk
from handler.functions.channels import APPROVE, DENY
from handler.store import Store
from handler.support.log import log_event

WINDOW_S = 300
_SEEN_S = 600.0
_APPROVAL_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ChatAnswer:
    status: int
    body: dict[str, Any]


def _refused(reason: str) -> ChatAnswer:
    log_event("chat.refused", level=logging.WARNING, reason=reason)
    return ChatAnswer(401, {"title": "Unauthorized", "status": 401, "detail": reason})


class ChatCallbacks:
    def __init__(
        self,
        desk: ApprovalDesk,
        store: Store,
        *,
        approvers: Mapping[str, Mapping[str, str]],
        slack_signing_secret: bytes | None = None,
        feishu_encrypt_key: bytes | None = None,
        feishu_verification_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._desk = desk
        self._store = store
        self._approvers = approvers
        self._slack = slack_signing_secret
        self._feishu_key = feishu_encrypt_key
        self._feishu_token = feishu_verification_token
        self._clock = clock

    def _decide(
        self, platform: str, chat: str, user: str, approval_id: str, approve: bool
    ) -> tuple[bool, str]:
        identity = self._approvers.get(f"{platform}:{chat}", {}).get(user)
        if identity is None:
            log_event("chat.not_an_approver", level=logging.WARNING, platform=platform, chat=chat, user=user)
            return False, f"{platform} user {user} may not decide approvals in this chat"
        answer = self._desk.decide(approval_id, approve=approve, by=identity, comment=f"from {platform}")
        return answer.http_status < 400, answer.detail

    def _signed(self, platform: str, timestamp: str, signature: str, expected: str) -> ChatAnswer | None:
        """The refusal of a click whose timestamp is stale, whose signature is wrong or was seen
        before; None for a good one."""
        header = "X-Slack-Request-Timestamp" if platform == "slack" else "X-Lark-Request-Timestamp"
        if not timestamp.isdigit() or len(timestamp) > 12:
            return _refused(f"{header} must be a Unix time in seconds")
        if abs(self._clock() - int(timestamp)) > WINDOW_S:
            return _refused(f"{header} is more than {WINDOW_S} s from now")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return _refused(f"the {platform} signature does not verify")
        seen = f"chat-seen:{platform}:{signature}"
        if not self._store.acquire(seen, uuid.uuid4().hex, ttl_s=_SEEN_S):
            return _refused("this signed request was seen before (a replay)")
        return None

    # -- Slack ---------------------------------------------------------------------------------

    def slack(self, headers: Mapping[str, str], body: bytes) -> ChatAnswer:
        if self._slack is None:
            return _off("Slack")
        timestamp = headers.get("x-slack-request-timestamp", "")
        signed = f"v0:{timestamp}:".encode() + body
        expected = "v0=" + hmac.new(self._slack, signed, hashlib.sha256).hexdigest()
        refused = self._signed("slack", timestamp, headers.get("x-slack-signature", ""), expected)
        if refused is not None:
            return refused
        click = _slack_click(body)
        if click is None:
            return ChatAnswer(200, {"text": "ecs-detach: not an approval button", "replace_original": False})
        _, detail = self._decide("slack", *click)
        return ChatAnswer(200, {"response_type": "ephemeral", "replace_original": False, "text": detail})

    # -- Feishu / Lark -------------------------------------------------------------------------

    def feishu(self, headers: Mapping[str, str], body: bytes) -> ChatAnswer:
        if self._feishu_key is None:
            return _off("Feishu")
        timestamp = headers.get("x-lark-request-timestamp", "")
        nonce = headers.get("x-lark-request-nonce", "")
        expected = hashlib.sha256(timestamp.encode() + nonce.encode() + self._feishu_key + body).hexdigest()
        refused = self._signed("feishu", timestamp, headers.get("x-lark-signature", ""), expected)
        if refused is not None:
            return refused
        payload = self._feishu_payload(body)
        token = payload.get("token") or (payload.get("header") or {}).get("token")
        if self._feishu_token is not None and not hmac.compare_digest(str(token), self._feishu_token):
            return _refused("the verification token does not match")
        if payload.get("type") == "url_verification":
            return ChatAnswer(200, {"challenge": payload.get("challenge")})
        click = _feishu_click(payload)
        if click is None:
            return ChatAnswer(
                200, {"toast": {"type": "info", "content": "ecs-detach: not an approval button"}}
            )
        ok, detail = self._decide("feishu", *click)
        return ChatAnswer(200, {"toast": {"type": "success" if ok else "error", "content": detail}})

    def _feishu_payload(self, body: bytes) -> dict[str, Any]:
        """The callback, decrypted when it came encrypted; empty when it is none."""
        try:
            payload = json.loads(body)
            if isinstance(payload, dict) and "encrypt" in payload:
                payload = json.loads(self._decrypt(str(payload["encrypt"])))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return {}
        return payload if isinstance(payload, dict) else {}

    def _decrypt(self, encrypted: str) -> str:
        assert self._feishu_key is not None
        raw = base64.b64decode(encrypted, validate=True)
        if len(raw) < 32 or len(raw) % 16:
            raise ValueError("not an AES-CBC ciphertext")
        key = hashlib.sha256(self._feishu_key).digest()
        decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
        padded = decryptor.update(raw[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode()


Click = tuple[str, str, str, bool]  # chat, user, approval id, approve


def _slack_click(body: bytes) -> Click | None:
    """A ``block_actions`` payload's chat, user, approval and decision; None for anything else."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        action = payload["actions"][0]
        chat = str((payload.get("channel") or {}).get("id") or payload["container"]["channel_id"])
        click = (
            chat,
            str(payload["user"]["id"]),
            str(action["value"]),
            {APPROVE: True, DENY: False}[action["action_id"]],
        )
    except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError):
        return None
    return click if _APPROVAL_ID.fullmatch(click[2]) else None


def _feishu_click(payload: dict[str, Any]) -> Click | None:
    """A ``card.action.trigger`` (schema 2.0) event's chat, operator, approval and decision."""
    try:
        event = payload["event"]
        value, operator = event["action"]["value"], event["operator"]
        user = str(operator.get("open_id") or operator["user_id"])
        decision = {"approve": True, "deny": False}[value["decision"]]
        click = (str(event["context"]["open_chat_id"]), user, str(value["approval_id"]), decision)
    except (KeyError, TypeError):
        return None
    return click if _APPROVAL_ID.fullmatch(click[2]) else None


def _off(platform: str) -> ChatAnswer:
    return ChatAnswer(404, {"title": "Not Found", "status": 404, "detail": f"{platform} callbacks are off"})

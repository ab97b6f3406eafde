"""Chat buttons coming back over real loopback HTTP, signed as Slack and Feishu/Lark sign them:
a good click decides as the approver the chat's allowlist names; a wrong, stale or replayed
signature is 401 and decides nothing; a user not on the list decides nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from handler.core.approval import ApprovalState
from handler.core.models import DetachRequest
from handler.entry.runtime import Runtime, build_runtime
from handler.functions.approvals import ApprovalDesk
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import WEB1, WEB1_DATA

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
FEISHU_KEY = "feishu-encrypt-key-0123"
FEISHU_TOKEN = "feishu-verification-token"
APPROVERS = {
    "slack:C0CHAN": {"U0ALICE": "alice", "U0BOT": "alerts"},
    "feishu:oc_chat": {"ou_bob": "bob"},
}


@pytest.fixture
def served(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Runtime, str]]:
    settings = fast_settings(
        tmp_path,
        emulator.url,
        approval_mode="always",
        slack_signing_secret=SLACK_SECRET,
        feishu_encrypt_key=FEISHU_KEY,
        feishu_verification_token=FEISHU_TOKEN,
        chat_approvers=APPROVERS,
    )
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    with BackgroundServer(runtime_app(runtime)) as server:
        yield runtime, server.url
    runtime.close()


def pending(runtime: Runtime) -> str:
    request = DetachRequest(server_id=WEB1, volume_id=WEB1_DATA, origin={"credential": "alerts"})
    outcome = runtime.detach(request)
    assert outcome.approval_id is not None
    return outcome.approval_id


def state(runtime: Runtime, approval_id: str) -> tuple[ApprovalState, str | None]:
    desk = runtime.detach.approvals
    assert isinstance(desk, ApprovalDesk)
    approval = desk.get(approval_id)
    assert approval is not None
    return approval.state, approval.decided_by


# -- Slack: signed as api.slack.com/authentication/verifying-requests-from-slack says --------------


def slack_click(approval_id: str, *, user: str = "U0ALICE", action: str = "ecs-detach.approve") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "team_id": "T0TEAM"},
        "channel": {"id": "C0CHAN", "name": "ops"},
        "container": {"type": "message", "channel_id": "C0CHAN", "message_ts": "1700000000.000100"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/xyz",
        "actions": [{"action_id": action, "block_id": "ecs-detach", "value": approval_id, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def slack_headers(body: bytes, *, at: float | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_a_slack_click_by_an_approver_approves(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = pending(runtime)
    body = slack_click(approval_id)

    answer = httpx.post(f"{url}/chat/slack", content=body, headers=slack_headers(body), timeout=10)

    assert answer.status_code == 200
    assert "approved" in answer.json()["text"]
    assert state(runtime, approval_id) == (ApprovalState.APPROVED, "alice")


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda body: slack_headers(body, secret="not-the-secret"), id="wrong"),
        pytest.param(lambda body: slack_headers(body, at=time.time() - 400), id="stale"),
        pytest.param(lambda body: slack_headers(body, at=time.time() + 400), id="future"),
        pytest.param(
            lambda body: {**slack_headers(body), "X-Slack-Timestamp": "x"} | {"X-Slack-Signature": ""},
            id="missing",
        ),
    ],
)
def test_a_badly_signed_slack_click_is_401_and_decides_nothing(
    served: tuple[Runtime, str], spoil: Any
) -> None:
    runtime, url = served
    approval_id = pending(runtime)
    body = slack_click(approval_id)

    answer = httpx.post(f"{url}/chat/slack", content=body, headers=spoil(body), timeout=10)

    assert answer.status_code == 401
    assert state(runtime, approval_id) == (ApprovalState.PENDING, None)


def test_a_replayed_slack_click_is_401(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = pending(runtime)
    body = slack_click(approval_id, action="ecs-detach.deny")
    headers = slack_headers(body)
    first = httpx.post(f"{url}/chat/slack", content=body, headers=headers, timeout=10)

    replayed = httpx.post(f"{url}/chat/slack", content=body, headers=headers, timeout=10)

    assert (first.status_code, replayed.status_code) == (200, 401)
    assert "replay" in replayed.json()["detail"]
    assert state(runtime, approval_id) == (ApprovalState.DENIED, "alice")


def test_a_slack_user_not_on_the_chats_list_or_the_requester_decides_nothing(
    served: tuple[Runtime, str],
) -> None:
    runtime, url = served
    approval_id = pending(runtime)
    for user in ("U0STRANGER", "U0BOT"):  # not listed; listed as the identity that asked
        body = slack_click(approval_id, user=user)
        answer = httpx.post(f"{url}/chat/slack", content=body, headers=slack_headers(body), timeout=10)
        assert answer.status_code == 200
    assert state(runtime, approval_id) == (ApprovalState.PENDING, None)
    assert "four eyes" in answer.json()["text"]


# -- Feishu/Lark: signed and encrypted as its callback documentation says ---------------------------


def feishu_encrypt(plain: str, key: str = FEISHU_KEY) -> str:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(hashlib.sha256(key.encode()).digest()), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode()


def feishu_headers(body: bytes, *, at: float | None = None, key: str = FEISHU_KEY) -> dict[str, str]:
    timestamp, nonce = str(int(time.time() if at is None else at)), os.urandom(8).hex()
    signature = hashlib.sha256(timestamp.encode() + nonce.encode() + key.encode() + body).hexdigest()
    return {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": signature,
        "Content-Type": "application/json",
    }


def feishu_card(approval_id: str, decision: str, *, token: str = FEISHU_TOKEN) -> bytes:
    callback = {
        "schema": "2.0",
        "header": {
            "event_id": os.urandom(8).hex(),
            "token": token,
            "create_time": str(int(time.time() * 1000000)),
            "event_type": "card.action.trigger",
            "tenant_key": "tenant",
            "app_id": "cli_app",
        },
        "event": {
            "operator": {"tenant_key": "tenant", "user_id": "u_bob", "open_id": "ou_bob"},
            "token": "c-token",
            "action": {"value": {"approval_id": approval_id, "decision": decision}, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": "om_1", "open_chat_id": "oc_chat"},
        },
    }
    return json.dumps({"encrypt": feishu_encrypt(json.dumps(callback))}).encode()


def test_feishu_url_verification_is_answered_with_its_challenge(served: tuple[Runtime, str]) -> None:
    _, url = served
    body = json.dumps({"challenge": "ch-123", "token": FEISHU_TOKEN, "type": "url_verification"}).encode()

    answer = httpx.post(f"{url}/chat/feishu", content=body, headers=feishu_headers(body), timeout=10)

    assert answer.json() == {"challenge": "ch-123"}


def test_an_encrypted_feishu_card_click_denies(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = pending(runtime)
    body = feishu_card(approval_id, "deny")

    answer = httpx.post(f"{url}/chat/feishu", content=body, headers=feishu_headers(body), timeout=10)

    assert answer.status_code == 200
    assert answer.json()["toast"]["type"] == "success"
    assert state(runtime, approval_id) == (ApprovalState.DENIED, "bob")


def test_badly_signed_stale_replayed_or_foreign_feishu_clicks_are_401(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = pending(runtime)
    body = feishu_card(approval_id, "approve")
    cases = [
        (body, feishu_headers(body, key="another-key")),
        (body, feishu_headers(body, at=time.time() - 400)),
        (feishu_card(approval_id, "approve", token="other-app"), None),
    ]
    for sent, headers in cases:
        answer = httpx.post(
            f"{url}/chat/feishu", content=sent, headers=headers or feishu_headers(sent), timeout=10
        )
        assert answer.status_code == 401, answer.text
    good = feishu_headers(body)
    first = httpx.post(f"{url}/chat/feishu", content=body, headers=good, timeout=10)
    replayed = httpx.post(f"{url}/chat/feishu", content=body, headers=good, timeout=10)
    assert (first.status_code, replayed.status_code) == (200, 401)
    assert state(runtime, approval_id) == (ApprovalState.APPROVED, "bob")


def test_chat_routes_are_off_without_approvals(tmp_path: Path, emulator: Emulator) -> None:
    runtime = build_runtime(
        fast_settings(tmp_path, emulator.url, slack_signing_secret=SLACK_SECRET), DEMO_CREDENTIALS
    )
    try:
        with BackgroundServer(runtime_app(runtime)) as server:
            answer = httpx.post(f"{server.url}/chat/slack", content=b"x", timeout=10)
        assert answer.status_code == 404
    finally:
        runtime.close()

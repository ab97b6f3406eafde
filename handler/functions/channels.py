"""Where notify sends a message: one sender per chat platform, each building the payload its
platform documents for an incoming webhook (or SMN's publish call) and checking its answer.

* Slack incoming webhook: ``{"text", "blocks"}`` (Block Kit; approvals get Approve/Deny buttons
  whose clicks come back to ``POST /chat/slack``); the answer is ``200 ok``.
* Microsoft Teams (incoming webhook or Workflows): a message with one Adaptive Card attachment;
  a button opens the approval page (a Teams webhook cannot post a click back).
* Feishu/Lark custom bot: ``msg_type`` ``interactive`` with a card; approvals get buttons whose
  ``value`` names the approval and the decision (their clicks reach ``POST /chat/feishu`` when
  the card is sent by an app whose card callback URL is set to it); signed with the bot's
  secret when one is set (``timestamp`` and ``sign``); the answer is ``{"code": 0}``.
* DingTalk custom robot: ``markdown``, or an ``actionCard`` with a button opening the approval;
  signed (``timestamp`` and ``sign`` in the URL) when a secret is set; ``{"errcode": 0}``.
* WeCom group robot: ``markdown`` (4096 bytes at most); ``{"errcode": 0}``.
* SMN (email, SMS and the other protocols of its subscriptions): the text, published to a topic.

A failure raises ``DeliveryFailed`` (the notify consumer retries the event, then dead-letters
it); the webhook URL, which holds the platform's secret, never appears in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote_plus

import httpx

from handler.cloud import ApiError, SmnClient, TransportError
from handler.errors import EcsDetachError
from handler.functions.channel_config import ChannelConfig

APPROVE, DENY = "ecs-detach.approve", "ecs-detach.deny"  # Slack action ids


class DeliveryFailed(EcsDetachError):
    """A platform did not take a message (no answer, an error status or code)."""


class Notice(NamedTuple):
    """One message, before a platform's format: what happened, in words and buttons."""

    outcome: str
    title: str
    text: str
    approval_id: str | None  # approval_requested: the buttons decide it
    link: str | None  # the approval's page (or the request's), when a base URL is configured


class Sender(Protocol):
    config: ChannelConfig

    def send(self, notice: Notice) -> None: ...


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notice: Notice) -> dict[str, Any]:
    """An incoming-webhook message: a header, the text, and for an approval its buttons."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(notice.text)[:3000]}},
    ]
    buttons: list[dict[str, Any]] = []
    if notice.approval_id:
        buttons += [
            {
                "type": "button",
                "action_id": APPROVE,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": notice.approval_id,
            },
            {
                "type": "button",
                "action_id": DENY,
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "value": notice.approval_id,
            },
        ]
    if notice.link:
        buttons.append(
            {
                "type": "button",
                "action_id": "ecs-detach.open",
                "text": {"type": "plain_text", "text": "Open"},
                "url": notice.link,
            }
        )
    if buttons:
        blocks.append({"type": "actions", "block_id": "ecs-detach", "elements": buttons})
    return {"text": notice.title, "blocks": blocks}


def teams_payload(notice: Notice) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": notice.text, "wrap": True},
        ],
    }
    if notice.link:
        title = "Review and decide" if notice.approval_id else "Open"
        card["actions"] = [{"type": "Action.OpenUrl", "title": title, "url": notice.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def feishu_payload(notice: Notice) -> dict[str, Any]:
    elements: list[dict[str, Any]] = [{"tag": "div", "text": {"tag": "lark_md", "content": notice.text}}]
    actions: list[dict[str, Any]] = []
    if notice.approval_id:
        for label, decision, style in (("Approve", "approve", "primary"), ("Deny", "deny", "danger")):
            actions.append(
                {
                    "tag": "button",
                    "text": {"tag": "plain_text", "content": label},
                    "type": style,
                    "value": {"approval_id": notice.approval_id, "decision": decision},
                }
            )
    if notice.link:
        actions.append(
            {"tag": "button", "text": {"tag": "plain_text", "content": "Open"}, "url": notice.link}
        )
    if actions:
        elements.append({"tag": "action", "actions": actions})
    template = "orange" if notice.approval_id else ("green" if notice.outcome == "succeeded" else "red")
    card = {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": notice.title}, "template": template},
        "elements": elements,
    }
    return {"msg_type": "interactive", "card": card}


def feishu_sign(secret: str, timestamp: int) -> str:
    """A Feishu/Lark custom bot's ``sign``: HMAC-SHA256 keyed with ``{timestamp}\\n{secret}`` over
    nothing, base64."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """A DingTalk robot's ``sign``: HMAC-SHA256 keyed with the secret over
    ``{timestamp}\\n{secret}``, base64, URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode())


def dingtalk_payload(notice: Notice) -> dict[str, Any]:
    if notice.link:
        card = {
            "title": notice.title,
            "text": f"### {notice.title}\n\n{notice.text}",
            "btnOrientation": "0",
            "singleTitle": "Review and decide" if notice.approval_id else "Open",
            "singleURL": notice.link,
        }
        return {"msgtype": "actionCard", "actionCard": card}
    return {
        "msgtype": "markdown",
        "markdown": {"title": notice.title, "text": f"### {notice.title}\n\n{notice.text}"},
    }


def wecom_payload(notice: Notice) -> dict[str, Any]:
    content = f"**{notice.title}**\n{notice.text}"
    if notice.link:
        content += f"\n[{'Review and decide' if notice.approval_id else 'Open'}]({notice.link})"
    encoded = content.encode()
    if len(encoded) > 4096:  # WeCom's limit for markdown content, in bytes
        content = encoded[:4093].decode(errors="ignore") + "…"
    return {"msgtype": "markdown", "markdown": {"content": content}}


class WebhookSender:
    """Any platform reached by an incoming webhook: build, sign, post, check the answer."""

    def __init__(
        self, config: ChannelConfig, client: httpx.Client, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._client = client
        self._clock = clock

    def send(self, notice: Notice) -> None:
        assert self.config.url is not None
        url = self.config.url.get_secret_value()
        kind = self.config.kind
        body: dict[str, Any]
        if kind == "slack":
            body = slack_payload(notice)
        elif kind == "teams":
            body = teams_payload(notice)
        elif kind == "feishu":
            body = feishu_payload(notice)
            if self.config.secret is not None:
                now = int(self._clock())
                body = {
                    "timestamp": str(now),
                    "sign": feishu_sign(self.config.secret.get_secret_value(), now),
                    **body,
                }
        elif kind == "dingtalk":
            body = dingtalk_payload(notice)
            if self.config.secret is not None:
                now_ms = int(self._clock() * 1000)
                sign = dingtalk_sign(self.config.secret.get_secret_value(), now_ms)
                url += f"{'&' if '?' in url else '?'}timestamp={now_ms}&sign={sign}"
        else:
            body = wecom_payload(notice)
        try:
            answer = self._client.post(url, json=body)
        except httpx.HTTPError as error:
            raise DeliveryFailed(
                f"{self.config.name}: no answer from {kind} ({type(error).__name__})"
            ) from None
        self._check(answer)

    def _check(self, answer: httpx.Response) -> None:
        name, kind = self.config.name, self.config.kind
        if not answer.is_success:
            raise DeliveryFailed(f"{name}: {kind} answered HTTP {answer.status_code}: {answer.text[:200]}")
        if kind in ("slack", "teams"):
            return
        try:
            data = answer.json()
        except ValueError:
            raise DeliveryFailed(f"{name}: {kind} answered something that is not JSON") from None
        code = data.get("code", data.get("StatusCode")) if kind == "feishu" else data.get("errcode")
        if code != 0:
            message = data.get("msg") or data.get("errmsg") or data.get("StatusMessage")
            raise DeliveryFailed(f"{name}: {kind} refused the message: {code} {message}")


class SmnSender:
    def __init__(self, config: ChannelConfig, smn: SmnClient) -> None:
        self.config = config
        self._smn = smn

    def send(self, notice: Notice) -> None:
        assert self.config.topic_urn is not None
        text = notice.text + (f"\n\n{notice.link}" if notice.link else "")
        try:
            self._smn.publish(self.config.topic_urn, message=text, subject=notice.title[:512])
        except (ApiError, TransportError) as error:
            raise DeliveryFailed(f"{self.config.name}: SMN did not take the message: {error}") from None

"""What many tests share: the default seed's IDs, a clock that moves only when told to, and the
chat platforms' incoming webhooks on loopback (``Receiver``; the ``receiver`` fixture of
tests/conftest.py runs one)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from emulator import DEMO_CREDENTIAL
from handler.local._serve import BackgroundServer

PID = DEMO_CREDENTIAL.project_id
WEB1 = "1b3c5e7f-0000-4000-8000-00000000aaaa"
WEB2 = "1b3c5e7f-0000-4000-8000-00000000a002"
DB1_SHUTOFF = "1b3c5e7f-0000-4000-8000-00000000a003"
BATCH1_LOCKED = "1b3c5e7f-0000-4000-8000-00000000a004"
CLUSTER1 = "1b3c5e7f-0000-4000-8000-00000000a005"
CLUSTER2 = "1b3c5e7f-0000-4000-8000-00000000a006"
WEB1_SYSTEM = "2c4d6e8f-0000-4000-8000-000000000001"
WEB1_DATA = "2c4d6e8f-0000-4000-8000-00000000bbbb"
WEB1_LOGS = "2c4d6e8f-0000-4000-8000-00000000cccc"
WEB2_DATA = "2c4d6e8f-0000-4000-8000-00000000b002"
DB1_SYSTEM = "2c4d6e8f-0000-4000-8000-000000000003"
DB1_DATA = "2c4d6e8f-0000-4000-8000-00000000b003"
BATCH1_DATA = "2c4d6e8f-0000-4000-8000-00000000b004"
SHARED = "2c4d6e8f-0000-4000-8000-00000000dddd"
SPARE = "2c4d6e8f-0000-4000-8000-00000000eeee"
UNKNOWN = "2c4d6e8f-0000-4000-8000-0000000fffff"

START = 1_705_307_400.0  # 2024-01-15T08:30:00Z


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def seconds_until_cut_off(client: socket.socket, head: bytes, every_s: float = 0.05) -> float | None:
    """Send ``head`` a byte every ``every_s`` (a slowloris client); the seconds after which the
    server closed the connection, or None when it took the whole head."""
    started = time.monotonic()
    for byte in head:
        try:
            client.sendall(bytes([byte]))
            client.setblocking(False)
            if client.recv(1) == b"":
                return time.monotonic() - started
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        finally:
            client.setblocking(True)
        time.sleep(every_s)
    return None


# -- the chat platforms' incoming webhooks ------------------------------------------------------

FEISHU_SECRET, DINGTALK_SECRET = "feishu-bot-secret", "SEC-dingtalk-secret"


@dataclass
class Receiver:
    """Every platform's incoming webhook on one loopback server: ``/{kind}`` checks the body as
    the platform documents it, records it, and answers as the platform does (``fail``: the
    platform's error answer)."""

    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)
    url: str = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            kind = request.path_params["kind"]
            body = json.loads(await request.body())
            try:
                check = getattr(self, f"_{kind}")
                check(body, request)
            except AssertionError as error:
                self.problems.append(f"{kind}: {error}")
                return PlainTextResponse("invalid_payload", status_code=400)
            self.received.setdefault(kind, []).append(body)
            if kind in self.fail:
                errors = {
                    "slack": PlainTextResponse("no_service", status_code=404),
                    "teams": PlainTextResponse("Bad request", status_code=400),
                    "feishu": JSONResponse({"code": 19024, "msg": "Key Words Not Found"}),
                    "dingtalk": JSONResponse({"errcode": 310000, "errmsg": "keywords not in content"}),
                    "wecom": JSONResponse({"errcode": 93000, "errmsg": "invalid webhook url"}),
                }
                return errors[kind]
            if kind == "slack":
                return PlainTextResponse("ok")
            if kind == "teams":
                return Response(status_code=202)
            if kind == "feishu":
                return JSONResponse({"code": 0, "msg": "success", "data": {}})
            return JSONResponse({"errcode": 0, "errmsg": "ok"})

        return Starlette(routes=[Route("/{kind}", hook, methods=["POST"])])

    # Slack Block Kit (api.slack.com/reference/block-kit): text fallback, blocks with limits.
    @staticmethod
    def _slack(body: dict[str, Any], _: Request) -> None:
        assert isinstance(body["text"], str)
        assert body["text"]
        assert set(body) == {"text", "blocks"}
        for block in body["blocks"]:
            assert block["type"] in ("header", "section", "actions")
            if block["type"] == "header":
                assert block["text"]["type"] == "plain_text"
                assert len(block["text"]["text"]) <= 150
            if block["type"] == "section":
                assert block["text"]["type"] == "mrkdwn"
                assert len(block["text"]["text"]) <= 3000
            if block["type"] == "actions":
                assert 1 <= len(block["elements"]) <= 25
                for button in block["elements"]:
                    assert button["type"] == "button"
                    assert button["text"]["type"] == "plain_text"
                    assert len(button["text"]["text"]) <= 75
                    assert 0 < len(button["action_id"]) <= 255
                    assert button.get("style", "primary") in ("primary", "danger")
                    assert ("value" in button) != ("url" in button)
                    assert len(button.get("value", "")) <= 2000

    # Teams incoming webhook with an Adaptive Card (learn.microsoft.com, "Send Adaptive Cards").
    @staticmethod
    def _teams(body: dict[str, Any], _: Request) -> None:
        assert body["type"] == "message"
        (attachment,) = body["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard"
        assert card["version"] in ("1.2", "1.3", "1.4", "1.5")
        assert all(item["type"] == "TextBlock" for item in card["body"])
        for action in card.get("actions", []):
            assert action["type"] == "Action.OpenUrl"
            assert action["url"].startswith("https://")

    # Feishu/Lark custom bot (open.feishu.cn, "custom bot usage guide"): signed, interactive card.
    @staticmethod
    def _feishu(body: dict[str, Any], _: Request) -> None:
        timestamp = int(body["timestamp"])
        assert abs(time.time() - timestamp) < 3600
        key = f"{timestamp}\n{FEISHU_SECRET}".encode()
        assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        assert body["msg_type"] == "interactive"
        card = body["card"]
        assert card["header"]["title"]["tag"] == "plain_text"
        for element in card["elements"]:
            assert element["tag"] in ("div", "action")
            for action in element.get("actions", []):
                assert action["tag"] == "button"
                assert action["text"]["tag"] == "plain_text"
                assert ("value" in action) != ("url" in action)

    # DingTalk custom robot (open.dingtalk.com, "custom robot"): signed URL, markdown/actionCard.
    @staticmethod
    def _dingtalk(body: dict[str, Any], request: Request) -> None:
        query = parse_qs(request.url.query)
        assert query["access_token"] == ["dt-token"]
        timestamp = query["timestamp"][0]
        assert abs(time.time() * 1000 - int(timestamp)) < 3600 * 1000
        mac = hmac.new(DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256)
        raw_sign = request.url.query.split("sign=")[1].split("&")[0]
        assert unquote(raw_sign) == base64.b64encode(mac.digest()).decode()
        assert body["msgtype"] in ("markdown", "actionCard")
        if body["msgtype"] == "markdown":
            assert set(body["markdown"]) == {"title", "text"}
        else:
            assert {"title", "text", "singleTitle", "singleURL"} <= set(body["actionCard"])

    # WeCom group robot (developer.work.weixin.qq.com, "group robot"): markdown, 4096 bytes.
    @staticmethod
    def _wecom(body: dict[str, Any], request: Request) -> None:
        assert parse_qs(request.url.query)["key"] == ["wc-key"]
        assert body["msgtype"] == "markdown"
        assert len(body["markdown"]["content"].encode()) <= 4096


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A ``Receiver`` listening on loopback; on leaving, no body it was sent was malformed."""
    box = Receiver()
    with BackgroundServer(box.app()) as server:
        box.url = server.url
        yield box
    assert not box.problems, box.problems

"""The notify function against local receivers that check each platform's documented incoming
webhook format (Slack Block Kit, Teams Adaptive Card, Feishu/Lark card with its signature,
DingTalk with its signed URL, WeCom markdown) and answer as the platform answers; SMN through
the emulator's SMN API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from emulator import DEMO_CREDENTIAL, EcsBackend, create_app, load_seed
from emulator.smn_models import SmnBackend
from handler.cloud import Credentials, SmnClient
from handler.core.approval import Approval, Preview
from handler.core.models import DetachRequest, DetachResult, Outcome, result_event
from handler.core.validation import InvalidInput
from handler.functions.channels import ChannelConfig, DeliveryFailed, Notice, SmnSender, WebhookSender
from handler.functions.notify import NotifyFunction, Templates
from handler.local._serve import BackgroundServer
from handler.store import SqliteStore
from tests.support import PID, WEB1, WEB1_DATA

FEISHU_SECRET, DINGTALK_SECRET = "feishu-bot-secret", "SEC-dingtalk-secret"
APPROVAL_ID = "a" * 32
NOTICE = Notice("succeeded", "Detached", "Volume off the server.", None, "https://detach.example.com/x")


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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    with BackgroundServer(box.app()) as server:
        box.url = server.url
        yield box
    assert not box.problems, box.problems


def channels(receiver: Receiver) -> list[ChannelConfig]:
    url = receiver.url
    return [
        ChannelConfig(name="slack", kind="slack", url=SecretStr(f"{url}/slack")),
        ChannelConfig(name="teams", kind="teams", url=SecretStr(f"{url}/teams")),
        ChannelConfig(
            name="feishu", kind="feishu", url=SecretStr(f"{url}/feishu"), secret=SecretStr(FEISHU_SECRET)
        ),
        ChannelConfig(
            name="dingtalk",
            kind="dingtalk",
            url=SecretStr(f"{url}/dingtalk?access_token=dt-token"),
            secret=SecretStr(DINGTALK_SECRET),
        ),
        ChannelConfig(name="wecom", kind="wecom", url=SecretStr(f"{url}/wecom?key=wc-key")),
    ]


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    opened = SqliteStore(":memory:")
    yield opened
    opened.close()


def notify(
    receiver: Receiver, store: SqliteStore, *, templates: Path | None = None, outcomes: tuple[str, ...] = ()
) -> tuple[NotifyFunction, httpx.Client]:
    client = httpx.Client(timeout=5)
    senders = [WebhookSender(config, client) for config in channels(receiver)]
    chosen = outcomes or ("approval_requested", "succeeded", "failed", "timed_out", "rejected")
    function = NotifyFunction(
        senders,
        outcomes=chosen,
        templates=Templates(templates),
        store=store,
        keep_s=3600,
        base_url="https://detach.example.com",
    )
    return function, client


def approval_event() -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    approval = Approval(
        id=APPROVAL_ID,
        key="k-1",
        request=DetachRequest(
            server_id=WEB1,
            volume_id=WEB1_DATA,
            project_id=PID,
            reason="disk <full> & more",
            origin={"source": "alertmanager", "alertname": "DiskFull"},
        ),
        preview=Preview(
            server_name="web-1",
            server_status="ACTIVE",
            device="/dev/vdb",
            size_gb=100,
            volume_type="SSD",
            shared=False,
            system_disk=False,
            checks_passed=["not the system disk"],
            approval_rules=["server tag env=prod"],
            will="volume … is detached",
        ),
        requested_by=["alerts"],
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    return {
        "specversion": "1.0",
        "id": f"approval-{APPROVAL_ID}",
        "source": "test",
        "type": "ecs-detach.approval_requested",
        "data": approval.model_dump(mode="json"),
    }


def succeeded_event() -> dict[str, Any]:
    result = DetachResult(
        server_id=WEB1, volume_id=WEB1_DATA, outcome=Outcome.SUCCEEDED, job_id="f" * 32, duration_s=12.4
    )
    return json.loads(result_event(result, source="test").model_dump_json())


def test_an_approval_reaches_every_platform_with_its_buttons(receiver: Receiver, store: SqliteStore) -> None:
    function, client = notify(receiver, store)
    with client:
        report = function(approval_event())

    assert set(report.sent) == {"slack", "teams", "feishu", "dingtalk", "wecom"}
    (slack,) = receiver.received["slack"]
    assert slack["text"] == "Approval needed: detach /dev/vdb from web-1"
    section = slack["blocks"][1]["text"]["text"]
    assert "disk &lt;full&gt; &amp; more" in section  # Slack's three escapes
    assert "server tag env=prod" in section
    buttons = slack["blocks"][2]["elements"]
    assert [(b["action_id"], b.get("value")) for b in buttons[:2]] == [
        ("ecs-detach.approve", APPROVAL_ID),
        ("ecs-detach.deny", APPROVAL_ID),
    ]
    assert buttons[2]["url"] == f"https://detach.example.com/approvals/{APPROVAL_ID}"
    (feishu,) = receiver.received["feishu"]
    values = [a.get("value") for a in feishu["card"]["elements"][1]["actions"]]
    assert values[:2] == [
        {"approval_id": APPROVAL_ID, "decision": "approve"},
        {"approval_id": APPROVAL_ID, "decision": "deny"},
    ]
    (dingtalk,) = receiver.received["dingtalk"]
    assert dingtalk["actionCard"]["singleURL"] == f"https://detach.example.com/approvals/{APPROVAL_ID}"
    (teams,) = receiver.received["teams"]
    assert teams["attachments"][0]["content"]["actions"][0]["title"] == "Review and decide"
    assert "web-1" in receiver.received["wecom"][0]["markdown"]["content"]


def test_a_result_goes_out_without_buttons(receiver: Receiver, store: SqliteStore) -> None:
    function, client = notify(receiver, store)
    with client:
        function(succeeded_event())

    (slack,) = receiver.received["slack"]
    assert slack["text"] == f"Detached: {WEB1_DATA} from {WEB1}"
    assert [b["type"] for b in slack["blocks"]] == ["header", "section"]
    assert "after 12 s" in slack["blocks"][1]["text"]["text"]
    assert receiver.received["dingtalk"][0]["msgtype"] == "markdown"


def test_a_failing_platform_is_retried_and_the_others_are_not_sent_twice(
    receiver: Receiver, store: SqliteStore
) -> None:
    function, client = notify(receiver, store)
    receiver.fail = {"feishu"}
    with client:
        with pytest.raises(DeliveryFailed, match="feishu refused the message: 19024"):
            function(succeeded_event())
        receiver.fail = set()
        again = function(succeeded_event())  # the consumer's retry

    assert again.sent == ("feishu",)
    assert set(again.skipped) == {"slack", "teams", "dingtalk", "wecom"}
    assert {kind: len(bodies) for kind, bodies in receiver.received.items()} == {
        "slack": 1,
        "teams": 1,
        "feishu": 2,
        "dingtalk": 1,
        "wecom": 1,
    }


@pytest.mark.parametrize("kind", ["slack", "teams", "dingtalk", "wecom"])
def test_each_platforms_error_answer_is_a_failed_delivery(
    receiver: Receiver, store: SqliteStore, kind: str
) -> None:
    function, client = notify(receiver, store)
    receiver.fail = {kind}
    with client, pytest.raises(DeliveryFailed, match=kind):
        function(succeeded_event())


def test_no_answer_is_a_failed_delivery_that_names_no_url(store: SqliteStore) -> None:
    config = ChannelConfig(
        name="gone", kind="slack", url=SecretStr("http://127.0.0.1:9/T000/B000/secret-part")
    )
    with httpx.Client(timeout=2) as client:
        sender = WebhookSender(config, client)
        function = NotifyFunction(
            [sender], outcomes=["succeeded"], templates=Templates(), store=store, keep_s=60
        )
        with pytest.raises(DeliveryFailed) as failed:
            function(succeeded_event())
    assert "secret-part" not in str(failed.value)


def test_outcomes_not_chosen_and_other_events_are_not_sent(receiver: Receiver, store: SqliteStore) -> None:
    function, client = notify(receiver, store, outcomes=("failed",))
    with client:
        assert function(succeeded_event()).sent == ()
        assert function({"type": "ecs-detach.accepted", "id": "x", "data": {}}).outcome == "ignored"
    assert receiver.received == {}


def test_a_template_is_overridden_by_a_file_of_the_same_name(
    receiver: Receiver, store: SqliteStore, tmp_path: Path
) -> None:
    (tmp_path / "succeeded.txt.j2").write_text("Done on {{ server_id }}\nJob {{ job_id }} is over.\n")
    function, client = notify(receiver, store, templates=tmp_path)
    with client:
        function(succeeded_event())

    (slack,) = receiver.received["slack"]
    assert slack["text"] == f"Done on {WEB1}"
    assert slack["blocks"][1]["text"]["text"] == f"Job {'f' * 32} is over."


def test_an_event_that_is_not_a_result_is_invalid(receiver: Receiver, store: SqliteStore) -> None:
    function, client = notify(receiver, store)
    with client, pytest.raises(InvalidInput, match=r"invalid ecs-detach\.succeeded event"):
        function({"type": "ecs-detach.succeeded", "id": "x", "data": {"server_id": "nope"}})


def test_smn_publishes_through_the_smn_api() -> None:
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL])
    smn = SmnBackend(clock=backend.now)
    topic = smn.create_topic(PID, {"name": "detach-mail"})
    credentials = Credentials(
        access_key=DEMO_CREDENTIAL.access_key,
        secret_key=SecretStr(DEMO_CREDENTIAL.secret_key),
        project_id=PID,
    )
    with BackgroundServer(create_app(backend, smn)) as server, SmnClient(server.url, credentials) as client:
        good = SmnSender(ChannelConfig(name="mail", kind="smn", topic_urn=topic.urn), client)
        good.send(NOTICE)  # the emulator checks the publish body as SMN documents it
        wrong = SmnSender(ChannelConfig(name="mail", kind="smn", topic_urn=topic.urn + "-gone"), client)
        with pytest.raises(DeliveryFailed, match="SMN did not take the message"):
            wrong.send(NOTICE)

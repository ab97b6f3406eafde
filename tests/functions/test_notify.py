"""The notify function against local receivers that check each platform's documented incoming
webhook format (Slack Block Kit, Teams Adaptive Card, Feishu/Lark card with its signature,
DingTalk with its signed URL, WeCom markdown) and answer as the platform answers; SMN through
the emulator's SMN API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from emulator import DEMO_CREDENTIAL, EcsBackend, create_app, load_seed
from emulator.smn_models import SmnBackend
from handler.cloud import Credentials, SmnClient
from handler.core.approval import Approval, Preview
from handler.core.followups import DetachResult, result_event
from handler.core.models import DetachRequest, Outcome
from handler.core.validation import InvalidInput
from handler.functions.channel_config import ChannelConfig
from handler.functions.channels import DeliveryFailed, Notice, SmnSender, WebhookSender
from handler.functions.notify import NotifyFunction, Templates
from handler.local._serve import BackgroundServer
from handler.store import SqliteStore
from tests.support import DINGTALK_SECRET, FEISHU_SECRET, PID, WEB1, WEB1_DATA, Receiver

APPROVAL_ID = "a" * 32
NOTICE = Notice("succeeded", "Detached", "Volume off the server.", None, "https://detach.example.com/x")


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

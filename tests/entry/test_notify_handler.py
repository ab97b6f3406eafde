"""``notify_handler`` as FunctionGraph calls it: a results-topic trigger (SMN, DMS) whose events
go to the configured channels; a channel that fails raises, so the platform retries the batch."""

from __future__ import annotations

import json

import pytest

from handler.core.followups import DetachResult, result_event
from handler.core.models import Outcome
from handler.core.validation import InvalidInput
from handler.entry import functiongraph
from handler.functions.channels import DeliveryFailed
from tests.entry.test_functiongraph import FunctionGraphContext, freezes, function_env  # noqa: F401 (fixtures)
from tests.support import WEB1, WEB1_DATA, Receiver


@pytest.fixture
def notifying(function_env: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:  # noqa: F811
    channels = [{"name": "ops", "kind": "slack", "url": f"{receiver.url}/slack"}]
    monkeypatch.setenv("ECS_DETACH_NOTIFY_CHANNELS", json.dumps(channels))
    return receiver


def event() -> str:
    result = DetachResult(server_id=WEB1, volume_id=WEB1_DATA, outcome=Outcome.FAILED, job_id="e" * 32)
    return result_event(result, source="test").model_dump_json()


def test_an_smn_trigger_and_a_dms_batch_reach_the_channel(notifying: Receiver) -> None:
    smn = {"record": [{"event_version": "1.0", "smn": {"message": event(), "topic_urn": "urn:smn:x"}}]}
    dms = {"event_version": "v1.0", "trigger_type": "KAFKA", "records": [{"messages": [event()]}]}

    first = functiongraph.notify_handler(smn, FunctionGraphContext())
    again = functiongraph.notify_handler(dms, FunctionGraphContext())  # the same event: not sent twice

    assert first == {"records": [{"outcome": "failed", "sent": ["ops"]}]}
    assert again == {"records": [{"outcome": "failed", "sent": []}]}
    (message,) = notifying.received["slack"]
    assert message["text"] == f"Detach failed: {WEB1_DATA} on {WEB1}"


def test_a_failing_channel_and_a_bad_message_raise_for_the_platform(notifying: Receiver) -> None:
    notifying.fail = {"slack"}
    with pytest.raises(DeliveryFailed):
        functiongraph.notify_handler(json.loads(event()), FunctionGraphContext())
    with pytest.raises(InvalidInput):
        functiongraph.notify_handler({"records": [{"messages": [42]}]}, FunctionGraphContext())

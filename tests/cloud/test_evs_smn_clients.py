"""The EVS and SMN clients against the emulator over loopback, and what they put on the wire."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator import DEMO_CREDENTIAL, EcsBackend, create_app, load_seed
from handler.cloud import ApiError, EvsClient, SignerAuth, SmnClient, TransportError
from handler.local._serve import BackgroundServer
from tests.conftest import DEMO_CREDENTIALS
from tests.support import CLUSTER1, CLUSTER2, PID, SHARED, SPARE, UNKNOWN, WEB1, WEB1_DATA, WEB1_SYSTEM

HEX32 = re.compile(r"^[0-9a-f]{32}$")
TOPIC_URN = f"urn:smn:ap-southeast-1:{PID}:detach_events"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """One emulator for the module, with the topic ``detach_events``."""
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL])
    with BackgroundServer(create_app(backend)) as server:
        with httpx.Client(base_url=server.url, auth=SignerAuth(DEMO_CREDENTIALS)) as api:
            created = api.post(f"/v2/{PID}/notifications/topics", json={"name": "detach_events"})
        assert created.json()["topic_urn"] == TOPIC_URN
        yield server.url


@pytest.fixture
def evs(url: str) -> Iterator[EvsClient]:
    with EvsClient(url, DEMO_CREDENTIALS) as client:
        yield client


@pytest.fixture
def smn(url: str) -> Iterator[SmnClient]:
    with SmnClient(url, DEMO_CREDENTIALS) as client:
        yield client


def mock_smn(answer: httpx.Response, seen: list[httpx.Request]) -> SmnClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    return SmnClient(
        "https://smn.ap-southeast-1.myhuaweicloud.com",
        DEMO_CREDENTIALS,
        transport=httpx.MockTransport(handle),
    )


# -- EVS -------------------------------------------------------------------------------------------


def test_show_volume(evs: EvsClient) -> None:
    data = evs.show_volume(WEB1_DATA)
    assert (data.id, data.status, data.bootable, data.multiattach) == (WEB1_DATA, "in-use", False, False)
    assert [(a.server_id, a.device) for a in data.attachments] == [(WEB1, "/dev/vdb")]
    assert evs.show_volume(WEB1_SYSTEM).bootable is True  # "true" on the wire
    shared = evs.show_volume(SHARED, project_id=PID)
    assert shared.multiattach is True
    assert {a.server_id for a in shared.attachments} == {CLUSTER1, CLUSTER2}
    spare = evs.show_volume(SPARE)
    assert (spare.status, spare.attachments) == ("available", [])


def test_unknown_volume_is_a_typed_404(evs: EvsClient) -> None:
    with pytest.raises(ApiError) as caught:
        evs.show_volume(UNKNOWN)
    assert (caught.value.status, caught.value.code) == (404, "itemNotFound")
    assert caught.value.message == f"Volume {UNKNOWN} could not be found."
    assert caught.value.request_id


# -- SMN -------------------------------------------------------------------------------------------


def test_publish_returns_the_message_id(smn: SmnClient) -> None:
    assert HEX32.match(smn.publish(TOPIC_URN, message="volume detached", subject="detach done"))
    structure = json.dumps({"default": "detached", "http": '{"status": "SUCCESS"}'})
    assert HEX32.match(
        smn.publish(TOPIC_URN, message="detached", message_structure=structure, time_to_live=600)
    )


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "message"),
    [
        (
            {"topic_urn": f"urn:smn:ap-southeast-1:{PID}:nope", "message": "m"},
            404,
            "SMN.0006",
            "Topic not found.",
        ),
        ({"topic_urn": TOPIC_URN, "message": ""}, 400, "SMN.0009", "Parameter: Message is invalid."),
        (
            {"topic_urn": TOPIC_URN, "message": "m", "subject": "s" * 600},
            400,
            "SMN.0008",
            "Parameter: Subject is invalid.",
        ),
        (
            {"topic_urn": TOPIC_URN, "message": "m", "message_structure": "{}"},
            400,
            "SMN.0021",
            "MessageStructure is invalid.",
        ),
    ],
)
def test_smn_errors_are_typed(
    smn: SmnClient, kwargs: dict[str, Any], status: int, code: str, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        smn.publish(**kwargs)
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, message)
    assert HEX32.match(caught.value.request_id or "")


def test_publish_on_the_wire() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(200, json={"request_id": "r1", "message_id": "m1"})
    with mock_smn(answer, seen) as client:
        assert client.publish(TOPIC_URN, message="hello", time_to_live=60) == "m1"
    (request,) = seen
    assert request.method == "POST"
    assert request.url.raw_path.decode() == (
        f"/v2/{PID}/notifications/topics/urn%3Asmn%3Aap-southeast-1%3A{PID}%3Adetach_events/publish"
    )
    assert json.loads(request.content) == {"message": "hello", "time_to_live": "60"}
    assert request.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=")
    assert request.headers["Content-Type"] == "application/json"


def test_smn_error_shape_without_a_request_id_header() -> None:
    body = {"request_id": "r9", "code": "SMN.0008", "message": "Parameter: Subject is invalid."}
    with mock_smn(httpx.Response(400, json=body), []) as client, pytest.raises(ApiError) as caught:
        client.publish(TOPIC_URN, message="m", subject="s")
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (400, "SMN.0008", "r9")


def test_publish_without_a_message_id_is_an_invalid_response() -> None:
    with (
        mock_smn(httpx.Response(200, json={"request_id": "r1"}), []) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.publish(TOPIC_URN, message="m")
    assert (caught.value.status, caught.value.code) == (200, "InvalidResponse")


def test_no_answer_is_a_transport_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with SmnClient(f"http://127.0.0.1:{port}", DEMO_CREDENTIALS) as client, pytest.raises(TransportError):
        client.publish(TOPIC_URN, message="m")
    with EvsClient(f"http://127.0.0.1:{port}", DEMO_CREDENTIALS) as client, pytest.raises(TransportError):
        client.show_volume(WEB1_DATA)

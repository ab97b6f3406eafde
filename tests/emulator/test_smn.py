"""SMN in the emulator: topics, subscriptions, publish, and the signed HTTP push to a loopback
subscriber, whose signatures are checked here against the documented string to sign."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorCredential, create_app, load_seed
from emulator.smn_models import DeliveryPolicy, SmnBackend, string_to_sign
from handler.cloud import Credentials, SignerAuth
from handler.local._serve import BackgroundServer
from tests.support import PID

OTHER = EmulatorCredential("OTHERACCESSKEY000000", "other-secret-key-0123456789", "f" * 32)
FAST = DeliveryPolicy(attempts=3, backoff_s=0.05, max_backoff_s=0.1, timeout_s=2.0)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
SMN_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TOPICS = f"/v2/{PID}/notifications/topics"
CONFIRMATION_FIELDS = {
    "type",
    "signature",
    "signature_version",
    "topic_urn",
    "message_id",
    "message",
    "subscribe_url",
    "signing_cert_url",
    "timestamp",
}
NOTIFICATION_FIELDS = CONFIRMATION_FIELDS - {"subscribe_url"} | {"subject", "unsubscribe_url"}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A loopback subscriber: ``/hook/{name}`` records every POST and answers the next status
    queued for that name (200 when none is)."""

    url: str = ""
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    def endpoint(self, name: str) -> str:
        return f"{self.url}/hook/{name}"

    def of(self, name: str, kind: str) -> list[Delivery]:
        return [d for d in self.received.get(name, []) if d.headers["x-smn-message-type"] == kind]

    async def hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        delivery = Delivery(dict(request.headers), json.loads(await request.body()))
        self.received.setdefault(name, []).append(delivery)
        queued = self.statuses.get(name)
        return Response(status_code=queued.pop(0) if queued else 200)


@dataclass
class Smn:
    backend: SmnBackend
    url: str
    api: httpx.Client
    receiver: Receiver

    def admin(self, what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = httpx.get(f"{self.url}/_emulator/smn/{what}").json()[what]
        return items

    def create_topic(self, name: str) -> str:
        response = self.api.post(TOPICS, json={"name": name, "display_name": f"{name} events"})
        assert response.status_code == 200, response.text
        urn: str = response.json()["topic_urn"]
        return urn

    def subscribe(self, topic_urn: str, name: str, **body: Any) -> httpx.Response:
        payload = {"protocol": "http", "endpoint": self.receiver.endpoint(name), "remark": name, **body}
        return self.api.post(f"{TOPICS}/{quote(topic_urn, safe='')}/subscriptions", json=payload)

    def publish(self, topic_urn: str, **body: Any) -> httpx.Response:
        return self.api.post(f"{TOPICS}/{quote(topic_urn, safe='')}/publish", json=body)

    def confirmed_topic(self, name: str) -> str:
        """A topic with ``name`` subscribed and confirmed."""
        urn = self.create_topic(name)
        assert self.subscribe(urn, name).status_code == 200
        confirmation = wait_for(lambda: self.receiver.of(name, "SubscriptionConfirmation"))[0]
        assert httpx.get(confirmation.body["subscribe_url"]).status_code == 200
        return urn


def signer(credential: EmulatorCredential, secret: str | None = None) -> SignerAuth:
    return SignerAuth(
        Credentials(
            access_key=credential.access_key,
            secret_key=SecretStr(secret or credential.secret_key),
            project_id=credential.project_id,
        )
    )


@pytest.fixture(scope="module")
def smn() -> Iterator[Smn]:
    gateway = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL, OTHER])
    backend = SmnBackend(policy=FAST)
    receiver = Receiver()
    subscriber = Starlette(routes=[Route("/hook/{name}", receiver.hook, methods=["POST"])])
    with (
        BackgroundServer(create_app(gateway, backend)) as server,
        BackgroundServer(subscriber) as hooks,
        httpx.Client(base_url=server.url, auth=signer(DEMO_CREDENTIAL)) as api,
    ):
        receiver.url = hooks.url
        yield Smn(backend, server.url, api, receiver)


def wait_for(found: Callable[[], list[Delivery]], timeout: float = 5.0) -> list[Delivery]:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, "nothing was delivered in time"
        time.sleep(0.01)
    return result


def documented_string_to_sign(body: dict[str, Any]) -> str:
    """smn_ug_a9003 / the sample code, written out again: ``key\\nvalue\\n`` per signed key."""
    if body["type"] == "Notification":
        keys = ["message", "message_id", "subject", "timestamp", "topic_urn", "type"]
        if not body.get("subject"):
            keys.remove("subject")
    else:
        keys = ["message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type"]
    return "".join(f"{key}\n{body[key]}\n" for key in keys)


def assert_signed(body: dict[str, Any]) -> None:
    """The signature verifies with the certificate at ``signing_cert_url`` (SHA256withRSA)."""
    certificate = x509.load_pem_x509_certificate(httpx.get(body["signing_cert_url"]).content)
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    text = documented_string_to_sign(body).encode("utf-8")
    public_key.verify(base64.b64decode(body["signature"]), text, padding.PKCS1v15(), hashes.SHA256())


def assert_smn_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"request_id", "code", "message"}
    assert body["code"] == code
    assert body["request_id"] == response.headers["X-Request-Id"]
    return str(body["message"])


# -- the string to sign ------------------------------------------------------------------------


def test_string_to_sign_matches_the_documented_examples() -> None:
    notification = {
        "type": "Notification",
        "message": "My test message",
        "message_id": "88c726942175432bac921eafd0036163",
        "subject": "demo",
        "timestamp": "2016-08-15T07:29:16Z",
        "topic_urn": "urn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx",
        "signature": "ignored",
        "unsubscribe_url": "ignored",
    }
    assert string_to_sign(notification) == (
        "message\nMy test message\nmessage_id\n88c726942175432bac921eafd0036163\nsubject\ndemo\n"
        "timestamp\n2016-08-15T07:29:16Z\ntopic_urn\nurn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx\n"
        "type\nNotification\n"
    )
    assert "subject" not in string_to_sign({**notification, "subject": ""})
    confirmation = {
        "type": "SubscriptionConfirmation",
        "message": "You are invited",
        "message_id": "def5c309cbff44d5a870787ed937edf8",
        "subscribe_url": "https://example/confirm?token=t",
        "timestamp": "2016-08-15T07:29:16Z",
        "topic_urn": "urn:smn:regionId:d91989905b8449b896f3a4f0ad57222d:demo",
        "subject": "not signed",
    }
    assert string_to_sign(confirmation) == documented_string_to_sign(confirmation)
    assert string_to_sign(confirmation).startswith("message\nYou are invited\nmessage_id\n")


# -- topics ------------------------------------------------------------------------------------


def test_create_and_list_topics(smn: Smn) -> None:
    response = smn.api.post(TOPICS, json={"name": "alarms", "display_name": "Alarms"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"request_id", "topic_urn"}
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert body["topic_urn"] == f"urn:smn:ap-southeast-1:{PID}:alarms"
    assert smn.api.post(TOPICS, json={"name": "alarms"}).json()["topic_urn"] == body["topic_urn"]

    listing = smn.api.get(TOPICS, params={"limit": 100}).json()
    (topic,) = [t for t in listing["topics"] if t["name"] == "alarms"]
    assert topic["topic_urn"] == body["topic_urn"]
    assert (topic["display_name"], topic["push_policy"]) == ("Alarms", 0)
    assert listing["topic_count"] == len(listing["topics"])
    for limit in ("x", "²", "0", "101"):
        assert "Offset or limit" in assert_smn_error(
            smn.api.get(TOPICS, params={"limit": limit}), 400, "SMN.0015"
        )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "SMN.0002"),
        ({"name": "-bad"}, "SMN.0002"),
        ({"name": "ok", "display_name": "d" * 193}, "SMN.0003"),
    ],
)
def test_create_topic_errors(smn: Smn, body: dict[str, Any], code: str) -> None:
    assert_smn_error(smn.api.post(TOPICS, json=body), 400, code)


# -- subscribe, confirm, publish, push -----------------------------------------------------------


def test_confirmation_is_pushed_signed_and_confirms_via_subscribe_url(smn: Smn) -> None:
    urn = smn.create_topic("confirm_me")
    response = smn.subscribe(urn, "confirm_me")
    assert response.status_code == 200
    subscription_urn = response.json()["subscription_urn"]
    assert re.match(rf"^{re.escape(urn)}:[0-9a-f]{{32}}$", subscription_urn)

    (confirmation,) = wait_for(lambda: smn.receiver.of("confirm_me", "SubscriptionConfirmation"))
    headers, body = confirmation.headers, confirmation.body
    assert headers["x-smn-message-id"] == body["message_id"]
    assert (headers["x-smn-topic-urn"], headers["x-smn-subscription-urn"]) == (urn, subscription_urn)
    assert headers["content-type"].startswith("application/json")
    assert set(body) == CONFIRMATION_FIELDS
    assert (body["type"], body["signature_version"], body["topic_urn"]) == (
        "SubscriptionConfirmation",
        "v1",
        urn,
    )
    assert urn in body["message"]
    assert SMN_TIME.match(body["timestamp"])
    assert body["signing_cert_url"] == f"{smn.url}/_smn/cert.pem"
    assert_signed(body)

    statuses = {s["subscription_urn"]: s["status"] for s in smn.admin("subscriptions")}
    assert statuses[subscription_urn] == "unconfirmed"
    confirmed = httpx.get(body["subscribe_url"])
    assert (confirmed.status_code, confirmed.json()["subscription_urn"]) == (200, subscription_urn)
    assert {s["subscription_urn"]: s["status"] for s in smn.admin("subscriptions")}[
        subscription_urn
    ] == "confirmed"

    bad = httpx.get(f"{smn.url}/_smn/confirm", params={"token": "0" * 64})
    assert "token" in assert_smn_error(bad, 403, "SMN.0022")


def test_publish_pushes_a_signed_notification(smn: Smn) -> None:
    urn = smn.confirmed_topic("notified")
    response = smn.publish(urn, subject="detach done", message="volume detached", time_to_live="600")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"request_id", "message_id"}
    assert HEX32.match(body["message_id"])

    (notification,) = wait_for(lambda: smn.receiver.of("notified", "Notification"))
    headers, pushed = notification.headers, notification.body
    assert headers["x-smn-message-type"] == "Notification"
    assert headers["x-smn-message-id"] == pushed["message_id"] == body["message_id"]
    assert headers["x-smn-topic-urn"] == urn
    assert headers["x-smn-subscription-urn"].startswith(f"{urn}:")
    assert set(pushed) == NOTIFICATION_FIELDS
    assert (pushed["subject"], pushed["message"], pushed["signature_version"]) == (
        "detach done",
        "volume detached",
        "v1",
    )
    assert pushed["unsubscribe_url"].startswith(f"{smn.url}/_smn/unsubscribe?")
    assert_signed(pushed)

    deliveries = [d for d in smn.admin("deliveries") if d["message_id"] == body["message_id"]]
    assert [(d["type"], d["attempt"], d["status_code"], d["error"]) for d in deliveries] == [
        ("Notification", 1, 200, None)
    ]


def test_no_subject_and_message_structure(smn: Smn) -> None:
    urn = smn.confirmed_topic("structured")
    plain = smn.publish(urn, message="plain text").json()["message_id"]
    structure = json.dumps({"default": "for everyone", "http": "for http endpoints"})
    structured = smn.publish(urn, message_structure=structure, message="ignored").json()["message_id"]

    wait_for(lambda: smn.receiver.of("structured", "Notification")[1:])
    bodies = {d.body["message_id"]: d.body for d in smn.receiver.of("structured", "Notification")}
    assert "subject" not in bodies[plain]
    assert bodies[plain]["message"] == "plain text"
    assert_signed(bodies[plain])  # signed without a subject line
    assert bodies[structured]["message"] == "for http endpoints"
    assert_signed(bodies[structured])


def test_unconfirmed_subscriptions_get_nothing(smn: Smn) -> None:
    urn = smn.confirmed_topic("confirmed_one")
    assert smn.subscribe(urn, "pending_one").status_code == 200
    wait_for(lambda: smn.receiver.of("pending_one", "SubscriptionConfirmation"))

    message_id = smn.publish(urn, message="only for the confirmed").json()["message_id"]
    wait_for(lambda: smn.receiver.of("confirmed_one", "Notification"))
    time.sleep(0.2)
    assert smn.receiver.of("pending_one", "Notification") == []
    endpoints = [d["endpoint"] for d in smn.admin("deliveries") if d["message_id"] == message_id]
    assert endpoints == [smn.receiver.endpoint("confirmed_one")]


def test_unsubscribe_url_ends_the_subscription(smn: Smn) -> None:
    urn = smn.confirmed_topic("leaving")
    smn.publish(urn, message="last one")
    (notification,) = wait_for(lambda: smn.receiver.of("leaving", "Notification"))
    assert httpx.get(notification.body["unsubscribe_url"]).status_code == 200
    subscription_urn = notification.headers["x-smn-subscription-urn"]
    assert subscription_urn not in {s["subscription_urn"] for s in smn.admin("subscriptions")}
    again = httpx.get(notification.body["unsubscribe_url"])
    assert "not found" in assert_smn_error(again, 404, "SMN.0013")


# -- retries -------------------------------------------------------------------------------------


def test_failed_pushes_are_retried_with_backoff(smn: Smn) -> None:
    smn.receiver.statuses["flaky"] = [500, 503]
    urn = smn.create_topic("flaky")
    smn.subscribe(urn, "flaky")
    wait_for(lambda: smn.receiver.of("flaky", "SubscriptionConfirmation")[2:])
    attempts = [d for d in smn.admin("deliveries") if d["endpoint"] == smn.receiver.endpoint("flaky")]
    assert [(d["attempt"], d["status_code"]) for d in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert len({d["message_id"] for d in attempts}) == 1


def test_retries_are_bounded(smn: Smn) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}/hook"
    smn.receiver.statuses["down"] = [500] * 10
    urn = smn.create_topic("bounded")
    smn.subscribe(urn, "down")
    smn.subscribe(urn, "dead", endpoint=dead)
    time.sleep(FAST.backoff_s + FAST.max_backoff_s + 0.4)
    down = [d for d in smn.admin("deliveries") if d["endpoint"] == smn.receiver.endpoint("down")]
    assert [(d["attempt"], d["status_code"]) for d in down] == [(1, 500), (2, 500), (3, 500)]
    refused = [d for d in smn.admin("deliveries") if d["endpoint"] == dead]
    assert [d["attempt"] for d in refused] == [1, 2, 3]
    assert all(d["status_code"] is None and "ConnectError" in d["error"] for d in refused)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "SMN.0009"),
        ({"message": ""}, 400, "SMN.0009"),
        ({"message": 7}, 400, "SMN.0009"),
        ({"message": "x" * (256 * 1024 + 1)}, 400, "SMN.0009"),
        ({"message": "m", "subject": "s" * 513}, 400, "SMN.0008"),
        ({"message_structure": "not json"}, 400, "SMN.0021"),
        ({"message_structure": '{"http": "no default"}'}, 400, "SMN.0021"),
        ({"message_template_name": "detach_tpl"}, 400, "SMN.0038"),
        ({"message_template_name": "bad name!", "tags": {"k": "v"}}, 400, "SMN.0032"),
        ({"message_template_name": "detach_tpl", "tags": {"k" * 22: "v"}}, 400, "SMN.0038"),
        ({"message_template_name": "detach_tpl", "tags": {"k": "v"}}, 404, "SMN.0027"),
        ({"message": "m", "time_to_live": "0"}, 400, "SMN.9001"),
        ({"message": "m", "time_to_live": "86401"}, 400, "SMN.9001"),
        ({"message": "m", "time_to_live": "soon"}, 400, "SMN.9001"),
        ({"message": "m", "time_to_live": "²"}, 400, "SMN.9001"),
    ],
)
def test_publish_validation_errors(smn: Smn, body: dict[str, Any], status: int, code: str) -> None:
    urn = smn.create_topic("validated")
    assert_smn_error(smn.publish(urn, **body), status, code)


def test_publish_to_unknown_or_malformed_topic(smn: Smn) -> None:
    missing = f"urn:smn:ap-southeast-1:{PID}:no_such_topic"
    assert assert_smn_error(smn.publish(missing, message="m"), 404, "SMN.0006") == "Topic not found."
    assert_smn_error(smn.publish("not-a-urn", message="m"), 400, "SMN.0005")
    body = b"{not json"
    response = smn.api.post(f"{TOPICS}/{quote(smn.create_topic('raw'), safe='')}/publish", content=body)
    assert_smn_error(response, 400, "SMN.0009")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"protocol": "email", "endpoint": "ops@example.com"}, "SMN.0011"),
        ({"protocol": "https", "endpoint": "http://127.0.0.1:9/hook"}, "SMN.0012"),
        ({"protocol": "http", "endpoint": "http://"}, "SMN.0012"),
        ({"remark": "r" * 129}, "SMN.0017"),
    ],
)
def test_subscribe_errors(smn: Smn, body: dict[str, Any], code: str) -> None:
    urn = smn.create_topic("subscribe_errors")
    assert_smn_error(smn.subscribe(urn, "never", **body), 400, code)


def test_bad_signature_is_401_and_publishes_nothing(smn: Smn) -> None:
    urn = smn.confirmed_topic("guarded")
    with httpx.Client(base_url=smn.url, auth=signer(DEMO_CREDENTIAL, "wrong-secret")) as forged:
        response = forged.post(f"{TOPICS}/{quote(urn, safe='')}/publish", json={"message": "evil"})
    assert response.status_code == 401
    assert (response.json()["error_code"], response.json()["error_msg"]) == (
        "APIGW.0301",
        "verify aksk signature fail",
    )
    assert httpx.get(smn.url + TOPICS).status_code == 401
    time.sleep(0.2)
    assert smn.receiver.of("guarded", "Notification") == []


def test_another_projects_credential_is_refused(smn: Smn) -> None:
    with httpx.Client(base_url=smn.url, auth=signer(OTHER)) as other:
        assert_smn_error(other.get(TOPICS), 403, "SMN.0001")
        assert other.get(f"/v2/{OTHER.project_id}/notifications/topics").json()["topic_count"] == 0


def test_signing_certificate_is_served_and_stable(smn: Smn) -> None:
    first, second = httpx.get(f"{smn.url}/_smn/cert.pem"), httpx.get(f"{smn.url}/_smn/cert.pem")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/x-pem-file"
    assert first.content == second.content == smn.backend.signer.cert_pem
    assert first.content.startswith(b"-----BEGIN CERTIFICATE-----")

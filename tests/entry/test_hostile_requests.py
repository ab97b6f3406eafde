"""Property: nothing a caller sends makes the router answer 5xx or raise.

Over every route and every authentication scheme, with valid and broken credentials, arbitrary
headers (not ASCII, oversized, duplicated) and bodies (not UTF-8, 100,000 levels deep, huge
numbers, SMN envelopes, poll events): ``WebhookRouter.handle`` on a runtime wired to the
emulator, and the real Starlette server over loopback for a sample.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from handler.entry.runtime import Runtime, build_runtime
from handler.entry.webhooks import WebRequest
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.security import string_to_sign
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.security.conftest import anchors, certificate
from tests.security.smn import sign

TOKEN, BASIC, HMAC_SECRET = "tok-prop-4d2a9c", "am:pw-prop-7b1e", "hmac-prop-2c8f"
WHSEC = "whsec_" + base64.b64encode(hashlib.sha256(b"prop").digest()).decode()
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROUTES = ["/", "/alertmanager", "/grafana", "/smn", "/smn/", "/tickets/jira", "/tickets/nope", "/nowhere"]
SCHEMES = ["none", "bearer", "basic", "github", "grafana", "generic", "standard", "smn"]
CONTROLS = bytes([*range(0x20), 0x7F]).replace(b"\t", b"")
DEEP = [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000]


@dataclass
class Target:
    runtime: Runtime
    cert_url: str


@pytest.fixture
def target(tmp_path: Path, emulator: Emulator) -> Iterator[Target]:
    pem = certificate(KEY)
    app = Starlette(routes=[Route("/cert.pem", lambda _: Response(pem), methods=["GET"])])
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in anchors()))
    with BackgroundServer(app) as certs:
        settings_ = fast_settings(
            tmp_path,
            emulator.url,
            webhook_bearer_tokens=[TOKEN],
            webhook_basic_credentials=[BASIC],
            webhook_hmac_secrets=[HMAC_SECRET],
            webhook_standard_secrets=[WHSEC],
            smn_cert_hosts=["127.0.0.1"],
            smn_cert_ca_file=bundle,
        )
        runtime = build_runtime(settings_, DEMO_CREDENTIALS)
        yield Target(runtime, f"{certs.url}/cert.pem")
        runtime.close()


def _mac(message: bytes) -> str:
    return hmac.new(HMAC_SECRET.encode(), message, hashlib.sha256).hexdigest()


def credentials(scheme: str, body: bytes, cert_url: str, now: int) -> tuple[dict[str, str], bytes]:
    """Valid credentials of ``scheme`` for ``body`` (SMN wraps the body in a signed envelope)."""
    if scheme == "bearer":
        return {"authorization": f"Bearer {TOKEN}"}, body
    if scheme == "basic":
        return {"authorization": "Basic " + base64.b64encode(BASIC.encode()).decode()}, body
    if scheme == "github":
        return {"x-hub-signature-256": "sha256=" + _mac(body)}, body
    if scheme == "grafana":
        stamp = str(now)
        return {
            "x-grafana-alerting-signature": _mac(f"{stamp}:".encode() + body),
            "x-grafana-alerting-timestamp": stamp,
        }, body
    if scheme == "generic":
        return {"x-signature": "sha256=" + _mac(f"{now}.".encode() + body), "x-timestamp": str(now)}, body
    if scheme == "standard":
        key = base64.b64decode(WHSEC.removeprefix("whsec_"))
        mac = hmac.new(key, f"msg_1.{now}.".encode() + body, hashlib.sha256).digest()
        return {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        }, body
    if scheme == "smn":
        message = {
            "type": "Notification",
            "topic_urn": "urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:alarms",
            "message_id": "m-1",
            "message": body.decode("utf-8", "replace"),
            "timestamp": "2026-01-15T08:30:02Z",
            "signature_version": "v1",
            "signing_cert_url": cert_url,
        }
        string_to_sign(message)
        return {"x-smn-message-type": "Notification"}, json.dumps(
            {**message, "signature": sign(KEY, message)}
        ).encode()
    return {}, body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
poll_event = st.builds(
    lambda data: {
        "type": "Notification",
        "message": json.dumps({"type": "ecs-detach.accepted", "data": data}),
        "topic_urn": "urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:jobs",
    },
    json_values,
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.sampled_from(DEEP),
    st.builds(lambda n: b'{"server_id": ' + b"9" * n + b"}", st.integers(1, 20_000)),
    st.builds(lambda n: b"[1e" + str(n).encode() + b"]", st.integers(300, 10**6)),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda v: json.dumps(v).encode(), poll_event),
    st.builds(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-16"), json_values),
)
header_text = st.text(st.characters(max_codepoint=0x2FFF, codec="utf-8"), max_size=40)
noise = st.dictionaries(
    st.sampled_from(
        [
            "authorization",
            "content-type",
            "webhook-id",
            "webhook-signature",
            "webhook-timestamp",
            "x-hub-signature-256",
            "x-grafana-alerting-signature",
            "x-grafana-alerting-timestamp",
            "x-signature",
            "x-timestamp",
            "x-smn-message-type",
            "ce-specversion",
            "ce-type",
            "ce-id",
            "ce-source",
        ]
    ),
    header_text | st.builds(lambda n: "A" * n, st.integers(8_000, 70_000)),
    max_size=3,
)


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """``usual`` nine times in ten: most examples get past the route and method checks."""
    return draw(usual if draw(st.integers(0, 9)) else other)


@st.composite
def requests(draw: st.DrawFn, cert_url: str) -> WebRequest:
    scheme = draw(st.sampled_from(SCHEMES))
    route = (
        "/smn"
        if scheme == "smn"
        else mostly(draw, st.sampled_from(ROUTES), st.text(max_size=30).map("/".__add__))
    )
    body = draw(bodies)
    headers, body = credentials(
        scheme, body, cert_url, mostly(draw, st.just(int(time.time())), st.sampled_from([0, 2**40]))
    )
    if not draw(st.integers(0, 3)):  # break or pad the credentials
        headers = {**headers, **draw(noise)}
    json_type = st.sampled_from(["application/json", "application/cloudevents+json; charset=utf-8"])
    content_type = mostly(draw, json_type, st.sampled_from(["text/plain", "", "é/ü", "*/*+json"]))
    headers = {"content-type": content_type, **headers}
    method = mostly(draw, st.just("POST"), st.sampled_from(["GET", "PUT", "post", "DELETE"]))
    return WebRequest(method, route, {name.lower(): value for name, value in headers.items()}, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_router_never_answers_5xx(target: Target, data: st.DataObject) -> None:
    request = data.draw(requests(target.cert_url))
    answer = target.runtime.router.handle(request)
    event(f"status {answer.status}")  # pytest --hypothesis-show-statistics: what was reached
    assert answer.status < 500, (request.path, answer.body)
    json.dumps(answer.body)  # every adapter serialises it
    if answer.status == 401:
        assert answer.headers["WWW-Authenticate"]


def test_the_real_server_never_answers_5xx(target: Target) -> None:
    app = runtime_app(target.runtime)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:

        @settings(max_examples=40, deadline=None)
        @given(request=requests(target.cert_url), duplicate=st.booleans())
        def over_loopback(request: WebRequest, duplicate: bool) -> None:
            # What HTTP carries (RFC 9110 §5.5): header values of any byte but controls, obs-text
            # included; a path of URL characters; repeated headers.
            headers = [
                (name.encode(), value.encode("latin-1", "replace").translate(None, CONTROLS).strip())
                for name, value in request.headers.items()
            ]
            if duplicate:
                headers += headers
            path = quote(request.path, safe="/")
            answer = client.request(request.method, path, headers=headers, content=request.body)
            assert answer.status_code < 500, (request.path, answer.text)

        over_loopback()

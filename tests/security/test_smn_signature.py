"""SMN message signatures: the string to sign, the certificate URL allowlist, validity, caching."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from handler.security import (
    DEFAULT_SMN_CERT_HOSTS,
    SmnSignatureVerifier,
    Unauthenticated,
    WebhookAuthConfig,
    WebhookAuthenticator,
    string_to_sign,
)
from tests.security.conftest import anchors, certificate
from tests.security.smn import CERT_URL, Fetcher, notification, sign
from tests.security.support import NOW, Clock

EVENTS = Path(__file__).parents[2] / "events"


def verifier(fetcher: Fetcher, clock: Clock | None = None, **options: Any) -> SmnSignatureVerifier:
    return SmnSignatureVerifier(
        DEFAULT_SMN_CERT_HOSTS, fetch=fetcher, clock=clock or Clock(), trust=anchors(), **options
    )


def test_the_string_to_sign_is_the_guides_example() -> None:
    message = {
        "message": "My test message",
        "message_id": "88c726942175432bac921eafd0036163",
        "subject": "demo",
        "timestamp": "2016-08-15T07:29:16Z",
        "topic_urn": "urn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx",
        "type": "Notification",
        "signature": "ignored",
        "unsubscribe_url": "ignored",
    }
    assert string_to_sign(message) == (
        "message\nMy test message\nmessage_id\n88c726942175432bac921eafd0036163\nsubject\ndemo\n"
        "timestamp\n2016-08-15T07:29:16Z\ntopic_urn\nurn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx\n"
        "type\nNotification\n"
    )
    assert "subject" not in string_to_sign({**message, "subject": ""})
    confirmation = {**message, "type": "SubscriptionConfirmation", "subscribe_url": "https://smn/confirm"}
    assert string_to_sign(confirmation).startswith("message\nMy test message\nmessage_id\n")
    assert "subscribe_url\nhttps://smn/confirm\ntimestamp\n" in string_to_sign(confirmation)
    assert "subject" not in string_to_sign(confirmation)


def test_a_signed_notification_passes_on_smn(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key)})
    auth = WebhookAuthenticator(WebhookAuthConfig(), fetch=fetcher, clock=Clock(), trust=anchors())
    body = json.dumps(notification(rsa_key)).encode()
    assert auth.check("/smn", {"x-smn-message-type": "Notification"}, body) == "smn-signature"


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_signed_confirmation_passes(rsa_key: rsa.RSAPrivateKey, kind: str) -> None:
    message = json.loads((EVENTS / "smn-subscription-confirmation.json").read_text())
    message["type"] = kind
    message["signature"] = sign(rsa_key, message)
    verifier(Fetcher({CERT_URL: certificate(rsa_key)})).verify(message)


def test_an_ec_key_and_an_empty_subject_verify(ec_key: ec.EllipticCurvePrivateKey) -> None:
    verifier(Fetcher({CERT_URL: certificate(ec_key)})).verify(notification(ec_key, subject=""))


def test_the_repository_sample_is_refused_its_signature_is_a_placeholder(rsa_key: rsa.RSAPrivateKey) -> None:
    message = json.loads((EVENTS / "smn-cloudeye-evs-alarm.json").read_text())
    with pytest.raises(Unauthenticated, match="does not match"):
        verifier(Fetcher({CERT_URL: certificate(rsa_key)})).verify(message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message", '{"alarm_status": "ok"}'),
        ("topic_urn", "urn:smn:ap-southeast-1:ffffffffffffffffffffffffffffffff:ops-alarms"),
        ("timestamp", "2024-01-15T08:30:03Z"),
        ("subject", ""),
        ("type", "SubscriptionConfirmation"),
    ],
)
def test_a_tampered_message_is_refused(rsa_key: rsa.RSAPrivateKey, field: str, value: str) -> None:
    message = {**notification(rsa_key), field: value, "subscribe_url": "https://smn/confirm"}
    with pytest.raises(Unauthenticated, match="does not match"):
        verifier(Fetcher({CERT_URL: certificate(rsa_key)})).verify(message)


def test_a_signature_by_another_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(Unauthenticated, match="does not match"):
        verifier(Fetcher({CERT_URL: certificate(rsa_key)})).verify(notification(other_rsa_key))


@pytest.mark.parametrize(
    "url",
    [
        "https://smn.ap-southeast-1.myhuaweicloud.com.evil.example/cert.pem",
        "https://evil.example/smn.ap-southeast-1.myhuaweicloud.com/cert.pem",
        "https://smn.ap-southeast-1.myhuaweicloud.com@evil.example/cert.pem",
        "https://sms.ap-southeast-1.myhuaweicloud.com/cert.pem",
        "https://127.0.0.1/cert.pem",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_a_certificate_host_off_the_allowlist_is_refused_before_any_fetch(
    rsa_key: rsa.RSAPrivateKey, url: str
) -> None:
    fetcher = Fetcher({url: certificate(rsa_key)})
    with pytest.raises(Unauthenticated, match="not an allowed SMN host"):
        verifier(fetcher).verify(notification(rsa_key, url=url))
    assert fetcher.calls == []


def test_an_http_certificate_url_is_refused_unless_loopback(rsa_key: rsa.RSAPrivateKey) -> None:
    url = CERT_URL.replace("https://", "http://")
    fetcher = Fetcher({url: certificate(rsa_key)})
    with pytest.raises(Unauthenticated, match="must be an https URL"):
        verifier(fetcher).verify(notification(rsa_key, url=url))
    assert fetcher.calls == []
    local = "http://127.0.0.1:9/cert.pem"
    loopback = SmnSignatureVerifier(
        ["127.0.0.1"], fetch=Fetcher({local: certificate(rsa_key)}), clock=Clock(), trust=anchors()
    )
    loopback.verify(notification(rsa_key, url=local))


@pytest.mark.parametrize(
    ("valid_from", "valid_to", "reason"),
    [(NOW - 86400, NOW - 1, "has expired"), (NOW + 60, NOW + 86400, "not valid yet")],
)
def test_a_certificate_outside_its_validity_is_refused(
    rsa_key: rsa.RSAPrivateKey, valid_from: float, valid_to: float, reason: str
) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key, valid_from=valid_from, valid_to=valid_to)})
    with pytest.raises(Unauthenticated, match=reason):
        verifier(fetcher).verify(notification(rsa_key))


def test_the_certificate_is_fetched_once_for_many_messages(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key)})
    smn = verifier(fetcher)
    for index in range(20):
        smn.verify(notification(rsa_key, message_id=f"id-{index}"))
    assert fetcher.calls == [CERT_URL]


def test_the_cache_expires_and_is_bounded(rsa_key: rsa.RSAPrivateKey) -> None:
    urls = [CERT_URL.replace("SMN-ap", f"SMN-{index}-ap") for index in range(3)]
    fetcher = Fetcher(dict.fromkeys(urls, certificate(rsa_key)))
    clock = Clock()
    smn = verifier(fetcher, clock, cache_size=2, cache_ttl_s=600)
    for url in (*urls, urls[0]):  # the third evicts the first
        smn.verify(notification(rsa_key, url=url))
    assert fetcher.calls == [*urls, urls[0]]
    smn.verify(notification(rsa_key, url=urls[2]))
    assert len(fetcher.calls) == 4
    clock.now += 601
    smn.verify(notification(rsa_key, url=urls[2]))
    assert fetcher.calls[-1] == urls[2]
    assert len(fetcher.calls) == 5


def test_a_cached_certificate_that_expires_is_fetched_again_and_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key, valid_to=NOW + 100)})
    clock = Clock()
    smn = verifier(fetcher, clock)
    smn.verify(notification(rsa_key))
    clock.now = NOW + 101
    with pytest.raises(Unauthenticated, match="has expired"):
        smn.verify(notification(rsa_key))
    assert len(fetcher.calls) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"signature_version": "v2"}, "signature_version must be 'v1'"),
        ({"signature_version": None}, "signature_version must be 'v1'"),
        ({"signature": ""}, "has no signature"),
        ({"signature": "not base64!"}, "not base64"),
        ({"signing_cert_url": None}, "has no signing_cert_url"),
        ({"type": "Other"}, "signs no message of type 'Other'"),
        ({"message_id": 42}, "has no message_id text"),
    ],
)
def test_malformed_smn_messages_are_refused(
    rsa_key: rsa.RSAPrivateKey, change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        verifier(Fetcher({CERT_URL: certificate(rsa_key)})).verify({**notification(rsa_key), **change})


@pytest.mark.parametrize(("served", "reason"), [(None, "HTTP 404"), (b"not a certificate", "not an X.509")])
def test_an_unavailable_or_invalid_certificate_is_refused(
    rsa_key: rsa.RSAPrivateKey, served: bytes | None, reason: str
) -> None:
    fetcher = Fetcher({} if served is None else {CERT_URL: served})
    with pytest.raises(Unauthenticated, match=reason):
        verifier(fetcher).verify(notification(rsa_key))


@pytest.fixture
def cert_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """A loopback HTTP server with the certificate at /cert.pem (PEM) and /cert.der is missing."""
    pem = certificate(rsa_key)

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/cert.pem"
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(pem if found else b"missing")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_default_fetcher_gets_the_certificate_from_a_loopback_server(
    rsa_key: rsa.RSAPrivateKey, cert_server: str
) -> None:
    config = WebhookAuthConfig(smn_cert_hosts=["127.0.0.1"])
    auth = WebhookAuthenticator(config, clock=Clock(), trust=anchors())
    body = json.dumps(notification(rsa_key, url=f"{cert_server}/cert.pem")).encode()
    assert auth.check("/smn", {}, body) == "smn-signature"
    missing = json.dumps(notification(rsa_key, url=f"{cert_server}/cert.der")).encode()
    with pytest.raises(Unauthenticated) as refused:
        auth.check("/smn", {}, missing)
    assert refused.value.reason == "could not fetch the SMN signing certificate from 127.0.0.1: HTTP 404"


def test_refusals_echo_caller_values_cut_short(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({})
    long_host = "a" * 300 + ".example"
    with pytest.raises(Unauthenticated) as refused:
        verifier(fetcher).verify(notification(rsa_key, url=f"https://{long_host}/c.pem"))
    assert len(refused.value.reason) < 150
    with pytest.raises(Unauthenticated) as refused:
        verifier(fetcher).verify({**notification(rsa_key), "type": "x" * 10_000})
    assert len(refused.value.reason) < 150

"""SMN messages signed as the SMN user guide describes, and a certificate fetcher that counts."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from handler.security import CertificateFetchError

CERT_URL = "https://smn.ap-southeast-1.myhuaweicloud.com/smn/oss/cert/SMN-ap-southeast-1.pem"
TOPIC = "urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:ops-alarms"
NOTIFICATION_FIELDS = ("message", "message_id", "subject", "timestamp", "topic_urn", "type")
SUBSCRIPTION_FIELDS = ("message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type")


def guide_string(message: dict[str, Any]) -> bytes:
    """The string to sign, per the guide: sorted names, each line then its value, "\\n" after each."""
    names = NOTIFICATION_FIELDS if message["type"] == "Notification" else SUBSCRIPTION_FIELDS
    return "".join(f"{name}\n{message[name]}\n" for name in names if message.get(name)).encode()


def sign(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, message: dict[str, Any]) -> str:
    data = guide_string(message)
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(raw).decode()


def notification(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, url: str = CERT_URL, **fields: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "Notification",
        "topic_urn": TOPIC,
        "message_id": "a516bfc1c2c94d0c8e8a3d2f4e1b2c3d",
        "subject": "[Major alarm] evs-io-util-web-1-vdb",
        "message": '{"alarm_status": "alarm", "namespace": "SYS.EVS"}',
        "timestamp": "2024-01-15T08:30:02Z",
        "unsubscribe_url": "https://smn.ap-southeast-1.myhuaweicloud.com/smn/subscription/unsubscribe",
        "signature_version": "v1",
        "signing_cert_url": url,
        **fields,
    }
    return {**message, "signature": sign(key, message)}


class Fetcher:
    """Serves certificates by URL and records each call."""

    def __init__(self, certificates: dict[str, bytes]) -> None:
        self.certificates = certificates
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.certificates:
            raise CertificateFetchError("HTTP 404")
        return self.certificates[url]

"""SMN signing certificates: exact SMN hosts, a chain to a trust anchor, Huawei's subject."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from handler.core.validation import InvalidInput
from handler.entry._smn import SubscriptionConfirmer
from handler.security import (
    DEFAULT_SMN_CERT_HOSTS,
    SmnSignatureVerifier,
    Unauthenticated,
    WebhookAuthConfig,
    WebhookAuthenticator,
)
from handler.security._smn_trust import HUAWEI_SMN_SIGNING_CERT
from tests.security.conftest import anchors, certificate, self_signed
from tests.security.smn import CERT_URL, Fetcher, notification
from tests.security.support import Clock


def verifier(fetcher: Fetcher, **options: Any) -> SmnSignatureVerifier:
    return SmnSignatureVerifier(DEFAULT_SMN_CERT_HOSTS, fetch=fetcher, clock=Clock(), **options)


@pytest.mark.parametrize(
    "host",
    [
        "smn.ap-southeast-1.myhuaweicloud.com",
        "smn.eu-west-101.myhuaweicloud.eu",
        "smn.eu-de.otc.t-systems.com",
        "smn.eu-west-0.prod-cloud-ocb.orange-business.com",
        "SMN.CN-NORTH-4.MYHUAWEICLOUD.COM",
    ],
)
def test_each_clouds_smn_endpoint_is_allowed(rsa_key: rsa.RSAPrivateKey, host: str) -> None:
    url = f"https://{host}/smn/oss/cert/SMN.pem"
    verifier(Fetcher({url: certificate(rsa_key)}), trust=anchors()).verify(notification(rsa_key, url=url))


@pytest.mark.parametrize(
    "host",
    [
        "smn.obs.ap-southeast-1.myhuaweicloud.com",  # the old glob matched any depth
        "smn..myhuaweicloud.com",
        "smn.myhuaweicloud.com",
        "smn.ap-southeast-1.myhuaweicloud.com.attacker.example",
        "evil-smn.ap-southeast-1.myhuaweicloud.com",
        "smn.a_b.myhuaweicloud.com",
    ],
)
def test_any_other_host_is_refused_before_a_fetch(rsa_key: rsa.RSAPrivateKey, host: str) -> None:
    url = f"https://{host}/cert.pem"
    fetcher = Fetcher({url: certificate(rsa_key)})
    with pytest.raises(Unauthenticated, match="not an allowed SMN host"):
        verifier(fetcher, trust=anchors()).verify(notification(rsa_key, url=url))
    assert fetcher.calls == []


def test_an_untrusted_self_signed_certificate_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({CERT_URL: self_signed(rsa_key)})  # right subject, right host, right key
    with pytest.raises(Unauthenticated, match="not issued by a trusted CA"):
        verifier(fetcher, trust=anchors()).verify(notification(rsa_key))


def test_a_trusted_certificate_with_another_subject_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key, subject="CN=shop.example,O=Someone,C=DE")})
    with pytest.raises(Unauthenticated, match=r"'CN=shop\.example,O=Someone,C=DE' is not an accepted"):
        verifier(fetcher, trust=anchors()).verify(notification(rsa_key))
    accepted = verifier(fetcher, trust=anchors(), subjects=["CN=shop.example,O=Someone,C=DE"])
    accepted.verify(notification(rsa_key))


def test_by_default_only_the_published_huawei_certificate_and_public_cas_are_trusted(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    with pytest.raises(Unauthenticated, match="not issued by a trusted CA"):
        verifier(Fetcher({CERT_URL: certificate(rsa_key)})).verify(notification(rsa_key))
    # Huawei's own certificate passes host, dates, chain and subject; only our test key's
    # signature cannot match its key.
    huawei = verifier(Fetcher({CERT_URL: HUAWEI_SMN_SIGNING_CERT}))
    with pytest.raises(Unauthenticated, match="SMN signature does not match the message"):
        huawei.verify(notification(rsa_key))


def test_the_trust_anchors_come_from_a_ca_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    bundle = tmp_path / "smn-ca.pem"
    bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in anchors()))
    auth = WebhookAuthenticator(
        WebhookAuthConfig(smn_cert_ca_file=bundle),
        fetch=Fetcher({CERT_URL: certificate(rsa_key)}),
        clock=Clock(),
    )
    assert auth.check("/smn", {}, json.dumps(notification(rsa_key)).encode()) == "smn-signature"
    (tmp_path / "empty.pem").write_text("no certificate here\n")
    for path, problem in [
        (tmp_path / "missing.pem", "cannot read"),
        (tmp_path / "empty.pem", "holds no PEM"),
    ]:
        with pytest.raises(ValidationError, match=problem):
            WebhookAuthConfig(smn_cert_ca_file=path)
    with pytest.raises(ValidationError, match="entry 0 is not an RFC 4514 name"):
        WebhookAuthConfig(smn_cert_subjects=["not a name"])


@pytest.mark.parametrize(
    "url",
    [
        "https://smn.obs.ap-southeast-1.myhuaweicloud.com/confirm",
        "http://[::1/confirm",  # urlsplit raises ValueError on this
        "https://smn.ap-southeast-1.myhuaweicloud.com.attacker.example/confirm",
    ],
)
def test_a_subscription_is_confirmed_on_an_smn_host_only(url: str) -> None:
    with pytest.raises(InvalidInput, match="subscription not confirmed"):
        SubscriptionConfirmer(DEFAULT_SMN_CERT_HOSTS)(url)

"""Signing keys, a local CA with SMN signing certificates shaped like Huawei's, and self-signed
ones (every log record is captured by the ``records`` fixture of tests/conftest.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from handler.security import HUAWEI_SMN_SUBJECT
from tests.security.support import NOW

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, timezone.utc)


@cache
def _test_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A CA made here, standing in for Huawei's "Huawei Cloud CA" (the tests' trust anchor)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name.from_rfc4514_string("CN=Test Cloud CA,O=Test,C=CN")
    usage = dict.fromkeys(_KEY_USAGES, False) | {"key_cert_sign": True, "crl_sign": True}
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_at(NOW - 10 * 365 * 86400))
        .not_valid_after(_at(NOW + 10 * 365 * 86400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, ca


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def anchors() -> list[x509.Certificate]:
    """The trust the tests inject: the local CA only."""
    return [_test_ca()[1]]


def certificate(
    key: PrivateKey,
    *,
    valid_from: float = NOW - 86400,
    valid_to: float = NOW + 365 * 86400,
    subject: str = HUAWEI_SMN_SUBJECT,
) -> bytes:
    """A PEM signing certificate for ``key`` issued by the local CA, with the extensions of the
    one Huawei publishes (no subjectAltName), valid between the two Unix times."""
    ca_key, ca = _test_ca()
    usage = dict.fromkeys(_KEY_USAGES, False) | {
        "digital_signature": True,
        "key_encipherment": True,
        "key_agreement": True,
    }
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(subject))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_at(valid_from))
        .not_valid_after(_at(valid_to))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def self_signed(key: PrivateKey, *, subject: str = HUAWEI_SMN_SUBJECT) -> bytes:
    """A PEM certificate for ``key`` signed by itself: trusted by nobody."""
    name = x509.Name.from_rfc4514_string(subject)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_at(NOW - 86400))
        .not_valid_after(_at(NOW + 365 * 86400))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())

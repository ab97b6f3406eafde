"""Signing keys and self-signed certificates made here, and a capture of every log record."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from handler.support.log import LOGGER_NAME
from tests.security.support import NOW

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def certificate(
    key: PrivateKey, *, valid_from: float = NOW - 86400, valid_to: float = NOW + 365 * 86400
) -> bytes:
    """A self-signed PEM certificate for ``key``, valid between the two Unix times."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test-SMN-Signing")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.fromtimestamp(valid_from, timezone.utc))
        .not_valid_after(datetime.fromtimestamp(valid_to, timezone.utc))
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


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record logged during the test, from any logger, at any level."""
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    handler = Keep(logging.DEBUG)
    ours = logging.getLogger(LOGGER_NAME)
    loggers = [logging.getLogger()] + ([] if ours.propagate else [ours])
    ours_level = ours.level
    ours.setLevel(logging.DEBUG)
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield kept
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)
    ours.setLevel(ours_level)

"""SMN HTTP(S) message signatures, checked against the certificate at ``signing_cert_url``.

Sources: Huawei Cloud SMN user guide, "Message Signature Verification" (smn_ug_a9003) and
"Sample Code" (smn_ug_a9004), at support.huaweicloud.com/intl/en-us/usermanual-smn/ and, same
text, docs.otc.t-systems.com (github.com/opentelekomcloud-docs/simple-message-notification,
``umn/source/appendix/http_https_messages/``). The string to sign is, in this order, each field
name on a line and its value on the next, every line ending in ``\\n`` (the last one too):

- ``Notification``: message, message_id, subject, timestamp, topic_urn, type;
- ``SubscriptionConfirmation`` / ``UnsubscribeConfirmation``: message, message_id, subscribe_url,
  timestamp, topic_urn, type.

``signature`` is its base64 signature by the certificate's key. Where the sources differ, this
takes the most credible reading (``string_to_sign`` and ``_signature_hash`` are where to fix it):

- Algorithm: the Java sample verifies with the certificate's own signature algorithm
  (``getSigAlgName()``), Node derives it the same way, Go hard-codes SHA-256 with PKCS#1 v1.5.
  Here: RSA PKCS#1 v1.5 (ECDSA for an EC key) with the certificate's signature hash when it is
  SHA-256/384/512, else SHA-256.
- Empty ``subject``: the guide says leave it out when empty; Java omits only a missing one,
  Node any empty one. Here: left out when missing or empty.
- ``UnsubscribeConfirmation``: the guide, Java and Go sign it like a subscription confirmation;
  the Node sample signs nothing for it. Here: like a subscription confirmation.

The guide asks to fetch the certificate over HTTPS and verify the server's identity: the URL must
be https (http only on loopback, for the emulator) on an allowed host, checked before anything
is fetched, where a ``*`` in an allowed host stands for exactly one DNS label (the region). The
certificate must be within its validity dates, chain to a trust anchor (``_smn_trust``: the
certifi bundle and the signing certificate Huawei publishes, or ``ECS_DETACH_SMN_CERT_CA_FILE``),
verified with cryptography's X.509 verifier, and carry an accepted subject (by default Huawei's,
``CN=Huawei-Cloud-SMN-Meter,O=Huawei,C=CN``). Huawei's certificate has no subjectAltName, so the
end-entity extension policy is relaxed; a CA certificate must meet the Web PKI's.

The SMN ``timestamp`` gets no replay window: the docs say nothing on whether a
retried delivery is signed anew, and an old one may be a legitimate retry.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from handler.errors import EcsDetachError
from handler.security._common import HUAWEI_SMN_SUBJECT, Unauthenticated, host_allowed
from handler.security._smn_trust import default_anchors, load_certificates
from handler.support.log import log_event

SIGNATURE_VERSION = "v1"
_MAX_CERT_BYTES = 64 * 1024
_SUBSCRIPTION_FIELDS = ("message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type")
_SIGNED_FIELDS = {
    "Notification": ("message", "message_id", "subject", "timestamp", "topic_urn", "type"),
    "SubscriptionConfirmation": _SUBSCRIPTION_FIELDS,
    "UnsubscribeConfirmation": _SUBSCRIPTION_FIELDS,
}

CertificateFetcher = Callable[[str], bytes]
"""Returns the certificate (PEM or DER) at a URL, or raises ``CertificateFetchError``."""


class CertificateFetchError(EcsDetachError):
    """The signing certificate could not be fetched."""


def fetch_certificate(url: str, *, timeout: float = 10.0) -> bytes:
    """GET the certificate without following redirects (they could leave the allowed hosts)."""
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as error:
        raise CertificateFetchError(type(error).__name__) from error
    if response.status_code != 200:
        raise CertificateFetchError(f"HTTP {response.status_code}")
    if len(response.content) > _MAX_CERT_BYTES:
        raise CertificateFetchError(f"larger than {_MAX_CERT_BYTES} bytes")
    return response.content


def _shown(value: object) -> str:
    """A caller-supplied value as echoed in a refusal: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def string_to_sign(message: Mapping[str, Any]) -> str:
    """The text SMN signs for this message (see the module docstring)."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _SIGNED_FIELDS:
        raise Unauthenticated(f"SMN signs no message of type {_shown(kind)}")
    text = ""
    for name in _SIGNED_FIELDS[kind]:
        value = message.get(name)
        if name == "subject" and value in (None, ""):
            continue
        if not isinstance(value, str):
            raise Unauthenticated(f"the SMN message has no {name} text")
        text += f"{name}\n{value}\n"
    return text


def smn_envelope(headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
    """The body of a request that claims to be an SMN message (an ``X-SMN-MESSAGE-TYPE`` header,
    or a ``signature`` or ``signing_cert_url`` field), else None."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    envelope = parsed if isinstance(parsed, dict) else None
    if envelope is not None and ("signature" in envelope or "signing_cert_url" in envelope):
        return envelope
    if "x-smn-message-type" in headers:
        return envelope or {}
    return None


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(message: Mapping[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"the SMN message has no {name}")
    return value


def _load_chain(raw: bytes) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The signing certificate and any intermediates served after it (PEM), or the one DER."""
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            chain = load_certificates(raw)
            if chain:
                return chain[0], chain[1:]
            raise ValueError
        return x509.load_der_x509_certificate(raw), []
    except ValueError:
        raise Unauthenticated("the SMN signing certificate is not an X.509 certificate") from None


def _within_dates(certificate: x509.Certificate, now: datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise Unauthenticated("the SMN signing certificate is not valid yet")
    if now > certificate.not_valid_after_utc:
        raise Unauthenticated("the SMN signing certificate has expired")


def _signature_hash(certificate: x509.Certificate) -> hashes.HashAlgorithm:
    """The hash of the certificate's own signature when it is SHA-2, else SHA-256."""
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if isinstance(algorithm, (hashes.SHA256, hashes.SHA384, hashes.SHA512)):
        return algorithm
    return hashes.SHA256()


def _signed_by(certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
    key = certificate.public_key()
    algorithm = _signature_hash(certificate)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            raise Unauthenticated("the SMN signing certificate's key is neither RSA nor EC")
    except InvalidSignature:
        return False
    return True


class SmnSignatureVerifier:
    """Verifies SMN messages; certificates are cached per URL (LRU of ``cache_size``, each kept
    ``cache_ttl_s`` at most and never past its expiry)."""

    def __init__(
        self,
        allowed_hosts: Sequence[str],
        *,
        fetch: CertificateFetcher = fetch_certificate,
        clock: Callable[[], float] = time.time,
        trust: Sequence[x509.Certificate] | None = None,
        subjects: Sequence[str] = (HUAWEI_SMN_SUBJECT,),
        cache_size: int = 16,
        cache_ttl_s: float = 3600.0,
    ) -> None:
        """``trust``: the anchors a signing certificate must chain to (default: ``_smn_trust``);
        ``subjects``: the RFC 4514 subjects a signing certificate may have."""
        self._hosts = tuple(pattern.lower() for pattern in allowed_hosts)
        self._trust = tuple(trust) if trust is not None else None
        self._store: Store | None = None  # built on first use: the default reads certifi's bundle
        self._subjects = tuple(x509.Name.from_rfc4514_string(subject) for subject in subjects)
        self._fetch = fetch
        self._clock = clock
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        self._cache: OrderedDict[str, tuple[x509.Certificate, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def host_patterns(self) -> int:
        return len(self._hosts)

    def verify(self, message: Mapping[str, Any]) -> None:
        """Refuse (``Unauthenticated``) unless SMN signed ``message``, the parsed JSON body."""
        if message.get("signature_version") != SIGNATURE_VERSION:
            raise Unauthenticated(f"SMN signature_version must be {SIGNATURE_VERSION!r}")
        url = _text(message, "signing_cert_url")
        host = self._allowed_host(url)
        try:
            signature = base64.b64decode(_text(message, "signature"), validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            raise Unauthenticated("the SMN signature is not base64") from None
        signed = string_to_sign(message).encode()
        certificate = self._certificate(url, host)
        _within_dates(certificate, datetime.fromtimestamp(self._clock(), timezone.utc))  # also when cached
        if not _signed_by(certificate, signature, signed):
            raise Unauthenticated("the SMN signature does not match the message")

    def _allowed_host(self, url: str) -> str:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            raise Unauthenticated("signing_cert_url is not a URL") from None
        if not host_allowed(host, self._hosts):
            raise Unauthenticated(f"signing_cert_url host {_shown(host)} is not an allowed SMN host")
        if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(host)):
            raise Unauthenticated("signing_cert_url must be an https URL")
        return host

    def _trusted(
        self, certificate: x509.Certificate, intermediates: list[x509.Certificate]
    ) -> x509.Certificate:
        """``certificate`` when it is in date, chains to a trust anchor and has an accepted subject."""
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        _within_dates(certificate, now)
        if self._store is None:
            self._store = Store(list(self._trust if self._trust is not None else default_anchors()))
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(certificate, intermediates)
        except VerificationError:
            raise Unauthenticated("the SMN signing certificate is not issued by a trusted CA") from None
        try:
            subject = certificate.subject
            shown = _shown(subject.rfc4514_string())
        except ValueError:
            raise Unauthenticated("the SMN signing certificate's subject is malformed") from None
        if subject not in self._subjects:
            raise Unauthenticated(
                f"the SMN signing certificate's subject {shown} is not an accepted SMN subject"
            )
        return certificate

    def _certificate(self, url: str, host: str) -> x509.Certificate:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and cached[1] > now:
                self._cache.move_to_end(url)
                return cached[0]
        try:
            raw = self._fetch(url)
        except CertificateFetchError as error:
            raise Unauthenticated(
                f"could not fetch the SMN signing certificate from {host}: {error}"
            ) from None
        certificate = self._trusted(*_load_chain(raw))
        keep_until = min(now + self._cache_ttl_s, certificate.not_valid_after_utc.timestamp())
        with self._lock:
            self._cache[url] = (certificate, keep_until)
            self._cache.move_to_end(url)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        log_event("smn.certificate_fetched", host=host, not_after=certificate.not_valid_after_utc.isoformat())
        return certificate

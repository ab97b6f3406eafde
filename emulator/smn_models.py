"""SMN state (docs/cloud-api.md §6, §8): topics, HTTP(S) subscriptions and the signed messages that
publishing makes for them; no HTTP here (``smn_push`` delivers, ``smn_responses`` serves).

Only ``http`` and ``https`` subscriptions are emulated. Message templates are not: publishing
with ``message_template_name`` answers 404 ``SMN.0027`` once its ``tags`` are valid.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

Clock = Callable[[], float]

SUBSCRIPTION_CONFIRMATION, NOTIFICATION = "SubscriptionConfirmation", "Notification"
UNCONFIRMED, CONFIRMED = "unconfirmed", "confirmed"
SIGNATURE_VERSION = "v1"
PROTOCOLS = ("http", "https")
TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
TOPIC_URN_RE = re.compile(r"^urn:smn:[a-z0-9-]+:[0-9a-f]{32}:[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
TEMPLATE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_DISPLAY_NAME = 192
MAX_REMARK_BYTES = 128
MAX_SUBJECT_BYTES = 512
MAX_MESSAGE_BYTES = 256 * 1024
MAX_TAG_KEY, MAX_TAG_VALUE_BYTES = 21, 1024
MAX_TTL_S = 86400  # the SDK's limit; OTC documents 604800
MAX_PAGE_SIZE = 100
# Publishing with an invalid time_to_live has no documented code; SMN.9001 is the emulator's.
INVALID_TTL = "SMN.9001"
CONFIRMATION_TEXT = (
    "You are invited to subscribe to topic: {topic_urn}. To confirm this subscription, please visit "
    "the subscribe_url included in this message. The subscribe_url is valid only within 48 hours."
)


class SmnError(Exception):
    """An SMN API error: HTTP status, ``SMN.xxxx`` code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _invalid(code: str, parameter: str) -> SmnError:
    return SmnError(400, code, f"Parameter: {parameter} is invalid.")


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def iso_s(timestamp: float) -> str:
    """``2024-07-10T09:43:44Z``: the time format of SMN's HTTP(S) messages."""
    return (
        datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Topic:
    """One topic; ``urn`` is ``urn:smn:{region}:{project_id}:{name}``."""

    urn: str
    topic_id: str
    project_id: str
    name: str
    display_name: str
    created: float


@dataclass(frozen=True)
class Subscription:
    """An HTTP(S) endpoint on a topic; only a confirmed one receives notifications."""

    urn: str
    topic_urn: str
    protocol: str
    endpoint: str
    remark: str
    token: str = field(repr=False)
    status: str
    created: float


@dataclass(frozen=True)
class Publication:
    """A validated publish request: the text per protocol (``default`` for the others)."""

    subject: str | None
    texts: Mapping[str, str]

    def text_for(self, protocol: str) -> str:
        """What a subscriber of ``protocol`` receives."""
        return self.texts.get(protocol, self.texts["default"])


@dataclass(frozen=True)
class PushMessage:
    """One signed HTTP(S) message for one subscription (docs/cloud-api.md §8.1)."""

    type: str
    message_id: str
    topic_urn: str
    subscription_urn: str
    endpoint: str
    message: str
    timestamp: str
    signing_cert_url: str
    signature: str
    subject: str | None = None
    subscribe_url: str | None = None
    unsubscribe_url: str | None = None

    def headers(self) -> dict[str, str]:
        """The ``X-SMN-*`` headers."""
        return {
            "X-SMN-MESSAGE-TYPE": self.type,
            "X-SMN-MESSAGE-ID": self.message_id,
            "X-SMN-TOPIC-URN": self.topic_urn,
            "X-SMN-SUBSCRIPTION-URN": self.subscription_urn,
        }

    def body(self) -> dict[str, str]:
        """The JSON body; ``subject``, ``subscribe_url`` and ``unsubscribe_url`` only when set."""
        body: dict[str, str | None] = {
            "type": self.type,
            "signature": self.signature,
            "signature_version": SIGNATURE_VERSION,
            "subject": self.subject,
            "topic_urn": self.topic_urn,
            "message_id": self.message_id,
            "message": self.message,
            "subscribe_url": self.subscribe_url,
            "unsubscribe_url": self.unsubscribe_url,
            "signing_cert_url": self.signing_cert_url,
            "timestamp": self.timestamp,
        }
        return {key: value for key, value in body.items() if value}


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a message to a subscriber: its HTTP status, or the transport error."""

    message_id: str
    type: str
    subscription_urn: str
    endpoint: str
    attempt: int
    time: str
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class DeliveryPolicy:
    """How pushes are retried: ``attempts`` in all, waiting ``backoff_s`` then twice as long
    each time up to ``max_backoff_s``; an attempt succeeds on a 2xx answer."""

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 10.0
    timeout_s: float = 5.0


def string_to_sign(message: Mapping[str, str | None]) -> str:
    """The text SMN signs for an HTTP(S) message, from the message's JSON fields.

    ``key\\nvalue\\n`` for each signed key, keys in alphabetical order: a ``Notification`` signs
    ``message``, ``message_id``, ``subject`` (left out when empty), ``timestamp``, ``topic_urn``,
    ``type``; a ``SubscriptionConfirmation`` or ``UnsubscribeConfirmation`` signs ``message``,
    ``message_id``, ``subscribe_url``, ``timestamp``, ``topic_urn``, ``type``. The signature is
    base64(RSASSA-PKCS1-v1_5 with SHA-256 over the UTF-8 text), checked with the public key of
    the certificate at ``signing_cert_url``.

    Sources: the SMN user guide, "Message Signature Verification" (smn_ug_a9003,
    support.huaweicloud.com/intl/en-us/usermanual-smn/smn_ug_a9003.html; OTC copy in
    github.com/opentelekomcloud-docs/simple-message-notification,
    umn/source/appendix/http_https_messages/message_signature_verification.rst) for the keys,
    their order and one line per key and per value; "Sample Code" (smn_ug_a9004; OTC
    .../sample_code.rst), whose Java, Node.js and Go builders end every value, the last one
    included, with ``\\n``, and whose Go verifier calls ``rsa.VerifyPKCS1v15`` with
    ``crypto.SHA256`` (the Java one uses the certificate's own algorithm, SHA256withRSA for
    Huawei's published signing certificate, smn_ug_a9000).

    The sources are silent on escaping (none: raw values, as in the samples) and on a subject of
    ``""`` (the guide says "left blank", the Node.js sample tests truthiness: left out).
    """
    if message.get("type") == NOTIFICATION:
        keys = ["message", "message_id", "subject", "timestamp", "topic_urn", "type"]
        if not message.get("subject"):
            keys.remove("subject")
    else:
        keys = ["message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type"]
    return "".join(f"{key}\n{message.get(key) or ''}\n" for key in keys)


class MessageSigner:
    """A fresh RSA-2048 key with a self-signed certificate (SHA-256, ten years from ``now``)."""

    def __init__(self, now: float, common_name: str = "ecs-detach emulator SMN") -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        start = datetime.fromtimestamp(now, timezone.utc) - timedelta(days=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        self._key = key
        self.cert_pem = certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, text: str) -> str:
        """Base64 of the RSASSA-PKCS1-v1_5 SHA-256 signature of ``text`` (UTF-8)."""
        signature = self._key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")


# -- request validation (each failure is the documented SMN code) ------------------------------


def _optional_str(body: Mapping[str, Any], key: str, code: str, parameter: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(code, parameter)
    return value


def _message_text(value: Any, code: str, parameter: str) -> str:
    if not isinstance(value, str) or not value or _utf8_len(value) > MAX_MESSAGE_BYTES:
        raise _invalid(code, parameter)
    return value


def _structure(value: Any) -> dict[str, str]:
    """``message_structure``: JSON text of an object of strings with a ``default`` text."""
    invalid = SmnError(400, "SMN.0021", "MessageStructure is invalid.")
    if not isinstance(value, str) or _utf8_len(value) > MAX_MESSAGE_BYTES:
        raise invalid
    try:
        texts = json.loads(value)
    except (ValueError, RecursionError):
        raise invalid from None
    if not isinstance(texts, dict) or not all(isinstance(t, str) for t in texts.values()):
        raise invalid
    if not texts.get("default"):
        raise invalid
    return texts


def _check_template(body: Mapping[str, Any]) -> None:
    name = body["message_template_name"]
    if not isinstance(name, str) or not TEMPLATE_NAME_RE.match(name):
        raise _invalid("SMN.0032", "message_template_name")
    tags = body.get("tags")
    if not isinstance(tags, dict) or not tags:
        raise _invalid("SMN.0038", "tag")
    for key, value in tags.items():
        if not 0 < len(key) <= MAX_TAG_KEY or not isinstance(value, str):
            raise _invalid("SMN.0038", "tag")
        if _utf8_len(value) > MAX_TAG_VALUE_BYTES:
            raise _invalid("SMN.0038", "tag")


def _check_time_to_live(value: Any) -> None:
    """Seconds, 1 to ``MAX_TTL_S``, as a string (the SDK's type) or an integer; retries end long
    before any TTL, so it is not enforced further."""
    if value is None:
        return
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_TTL_S:
        raise SmnError(400, INVALID_TTL, "Parameter: time_to_live is invalid.")


def parse_publication(body: Mapping[str, Any]) -> Publication:
    """Validate a publish body (docs/cloud-api.md §6): ``message_structure`` wins over
    ``message_template_name``, which wins over ``message``."""
    subject = _optional_str(body, "subject", "SMN.0008", "Subject")
    if subject is not None and _utf8_len(subject) > MAX_SUBJECT_BYTES:
        raise _invalid("SMN.0008", "Subject")
    if body.get("message_structure") is not None:
        texts = _structure(body["message_structure"])
    elif body.get("message_template_name") is not None:
        _check_template(body)
        raise SmnError(404, "SMN.0027", "Template not found.")
    else:
        texts = {"default": _message_text(body.get("message"), "SMN.0009", "Message")}
    _check_time_to_live(body.get("time_to_live"))
    return Publication(subject or None, texts)


# -- the backend -----------------------------------------------------------------------------


@dataclass
class _State:
    topics: dict[str, Topic] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    attempts: list[DeliveryAttempt] = field(default_factory=list)


@dataclass(frozen=True)
class SmnSnapshot:
    """Everything the SMN backend holds."""

    topics: tuple[Topic, ...]
    subscriptions: tuple[Subscription, ...]
    attempts: tuple[DeliveryAttempt, ...]


class SmnBackend:
    """Topics, subscriptions and delivery attempts of every project in one region.

    The signing key and certificate are made on first use (RSA key generation takes a while).
    """

    def __init__(
        self,
        *,
        region: str = "ap-southeast-1",
        policy: DeliveryPolicy | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.region = region
        self.policy = policy or DeliveryPolicy()
        self._clock = clock
        self._lock = threading.RLock()
        self._signer: MessageSigner | None = None
        self._state = _State()

    def now(self) -> float:
        """The emulator clock."""
        return self._clock()

    @property
    def signer(self) -> MessageSigner:
        """The key that signs every message, and its certificate."""
        with self._lock:
            if self._signer is None:
                self._signer = MessageSigner(self._clock())
            return self._signer

    def create_topic(self, project_id: str, body: Mapping[str, Any]) -> Topic:
        """``{"name", "display_name"}`` → a topic; an existing name gives the existing topic."""
        name = body.get("name")
        if not isinstance(name, str) or not TOPIC_NAME_RE.match(name):
            raise _invalid("SMN.0002", "Name")
        display_name = _optional_str(body, "display_name", "SMN.0003", "DisplayName") or ""
        if len(display_name) > MAX_DISPLAY_NAME:
            raise _invalid("SMN.0003", "DisplayName")
        urn = f"urn:smn:{self.region}:{project_id}:{name}"
        with self._lock:
            topic = self._state.topics.get(urn)
            if topic is None:
                topic = Topic(urn, uuid.uuid4().hex, project_id, name, display_name, self._clock())
                self._state.topics[urn] = topic
            return topic

    def list_topics(self, project_id: str, *, offset: int, limit: int) -> tuple[int, list[Topic]]:
        """The project's topic count and one page, oldest first (``offset`` counts topics)."""
        if offset < 0 or not 0 < limit <= MAX_PAGE_SIZE:
            raise _invalid("SMN.0015", "Offset or limit")
        with self._lock:
            topics = [t for t in self._state.topics.values() if t.project_id == project_id]
        return len(topics), topics[offset : offset + limit]

    def _topic(self, project_id: str, topic_urn: str) -> Topic:
        if not TOPIC_URN_RE.match(topic_urn):
            raise _invalid("SMN.0005", "TopicUrn")
        topic = self._state.topics.get(topic_urn)
        if topic is None or topic.project_id != project_id:
            raise SmnError(404, "SMN.0006", "Topic not found.")
        return topic

    def subscribe(
        self, project_id: str, topic_urn: str, body: Mapping[str, Any], base_url: str
    ) -> tuple[Subscription, PushMessage | None]:
        """Add an HTTP(S) endpoint; returns it and the confirmation request to push, if any.

        Subscribing an endpoint again gives the same subscription (and, while it is
        unconfirmed, a new confirmation request).
        """
        protocol = body.get("protocol")
        if protocol not in PROTOCOLS:
            raise _invalid("SMN.0011", "Protocol")
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(f"{protocol}://"):
            raise _invalid("SMN.0012", "Endpoint")
        if not urlsplit(endpoint).hostname:
            raise _invalid("SMN.0012", "Endpoint")
        remark = _optional_str(body, "remark", "SMN.0017", "Remark") or ""
        if _utf8_len(remark) > MAX_REMARK_BYTES:
            raise _invalid("SMN.0017", "Remark")
        with self._lock:
            topic = self._topic(project_id, topic_urn)
            existing = [
                s
                for s in self._state.subscriptions.values()
                if s.topic_urn == topic.urn and s.endpoint == endpoint
            ]
            if existing:
                subscription = existing[0]
            else:
                subscription = Subscription(
                    urn=f"{topic.urn}:{uuid.uuid4().hex}",
                    topic_urn=topic.urn,
                    protocol=protocol,
                    endpoint=endpoint,
                    remark=remark,
                    token=secrets.token_hex(32),
                    status=UNCONFIRMED,
                    created=self._clock(),
                )
                self._state.subscriptions[subscription.urn] = subscription
            if subscription.status == CONFIRMED:
                return subscription, None
            return subscription, self._confirmation(subscription, base_url)

    def _confirmation(self, subscription: Subscription, base_url: str) -> PushMessage:
        query = urlencode({"token": subscription.token, "topic_urn": subscription.topic_urn})
        return self._signed(
            subscription,
            type=SUBSCRIPTION_CONFIRMATION,
            message_id=uuid.uuid4().hex,
            message=CONFIRMATION_TEXT.format(topic_urn=subscription.topic_urn),
            timestamp=iso_s(self._clock()),
            base_url=base_url,
            subscribe_url=f"{base_url}/_smn/confirm?{query}",
        )

    def _signed(self, subscription: Subscription, *, base_url: str, **fields: Any) -> PushMessage:
        unsigned = PushMessage(
            topic_urn=subscription.topic_urn,
            subscription_urn=subscription.urn,
            endpoint=subscription.endpoint,
            signing_cert_url=f"{base_url}/_smn/cert.pem",
            signature="",
            **fields,
        )
        return replace(unsigned, signature=self.signer.sign(string_to_sign(unsigned.body())))

    def confirm(self, token: str) -> Subscription:
        """Confirm the subscription whose confirmation carried ``token`` (403 ``SMN.0022`` if none)."""
        with self._lock:
            for subscription in self._state.subscriptions.values():
                if secrets.compare_digest(subscription.token, token):
                    confirmed = replace(subscription, status=CONFIRMED)
                    self._state.subscriptions[subscription.urn] = confirmed
                    return confirmed
        raise SmnError(403, "SMN.0022", "Parameter: token is invalid.")

    def unsubscribe(self, subscription_urn: str) -> Subscription:
        """Remove a subscription (404 ``SMN.0013`` if unknown)."""
        with self._lock:
            subscription = self._state.subscriptions.pop(subscription_urn, None)
        if subscription is None:
            raise SmnError(404, "SMN.0013", "Subscription resource not found.")
        return subscription

    def publish(
        self, project_id: str, topic_urn: str, body: Mapping[str, Any], base_url: str
    ) -> tuple[str, list[PushMessage]]:
        """Validate and publish; returns the message ID and one notification per confirmed
        subscription, all with that ID and one timestamp."""
        publication = parse_publication(body)
        message_id = uuid.uuid4().hex
        with self._lock:
            topic = self._topic(project_id, topic_urn)
            subscriptions = [
                s
                for s in self._state.subscriptions.values()
                if s.topic_urn == topic.urn and s.status == CONFIRMED
            ]
            timestamp = iso_s(self._clock())
        messages = [
            self._signed(
                s,
                type=NOTIFICATION,
                message_id=message_id,
                subject=publication.subject,
                message=publication.text_for(s.protocol),
                timestamp=timestamp,
                base_url=base_url,
                unsubscribe_url=f"{base_url}/_smn/unsubscribe?{urlencode({'subscription_urn': s.urn})}",
            )
            for s in subscriptions
        ]
        return message_id, messages

    def record_attempt(self, attempt: DeliveryAttempt) -> None:
        """Append one delivery attempt to the log."""
        with self._lock:
            self._state.attempts.append(attempt)

    def snapshot(self) -> SmnSnapshot:
        """Every topic, subscription and delivery attempt, oldest first."""
        with self._lock:
            state = self._state
            return SmnSnapshot(
                tuple(state.topics.values()), tuple(state.subscriptions.values()), tuple(state.attempts)
            )

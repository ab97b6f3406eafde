"""open_topic: choosing the backend by URL, rejecting bad URLs, TLS, and keeping credentials out of
messages, reprs and logs."""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.topics import Topic, TopicError, open_topic
from tests.topics.brokers import BACKENDS, LOOPBACK, PORTS, RedisBackend, proxy_to
from tests.topics.conftest import require_broker

SECRET = "s3cret-" + uuid.uuid4().hex[:8]


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        ("kafka://user:s3cret@broker:9092/x", ["'kafka'", "sqlite://", "amqp://", "***@broker:9092"]),
        ("amqp://user:s3cret@[::1/vhost", ["malformed"]),
        ("user:s3cret@host", ["'user'", "sqlite://"]),
        ("topics.db", ["no scheme", "sqlite://"]),
        ("sqlite://host/t.db", ["sqlite:////absolute"]),
        ("sqlite://user:s3cret@/t.db", ["malformed"]),
        ("sqlite:t.db", ["malformed"]),
        ("sqlite://", ["malformed"]),
        ("sqlite:///", ["malformed"]),
        ("sqlite:///t.db#s3cret", ["malformed"]),
        ("sqlite:///t.db?topic=", ["topic name"]),
        ("sqlite:///t.db?topic=a&topic=b", ["topic name"]),
        ("sqlite:///t.db?password=s3cret", ["unknown parameter password"]),
        ("sqlite:///t.db?s3cret", ["malformed query"]),
        ("redis://:s3cret@127.0.0.1:6379/zero", ["database number", "redis://***@127.0.0.1:6379/zero"]),
        ("redis://:s3cret@127.0.0.1:6379/0?topic=", ["non-empty topic"]),
        ("redis://:s3cret@127.0.0.1:6379/0?topic=a&topic=b", ["non-empty topic"]),
        ("redis://:s3cret@127.0.0.1:6379/0?password=s3cret", ["unknown parameter password"]),
        ("redis://:s3cret@127.0.0.1:6379/0?ca=/etc/ca.pem", ["needs rediss://"]),
        ("redis://:s3cret@:6379/0", ["malformed redis"]),
        ("rediss://:s3cret@127.0.0.1:99999/0", ["malformed rediss"]),
        ("nats://u:s3cret@127.0.0.1:4222/path", ["has a path", "nats://***@127.0.0.1:4222/path"]),
        ("nats://u:s3cret@127.0.0.1:4222?ca=/etc/ca.pem", ["needs tls://"]),
        ("tls://u:s3cret@127.0.0.1:4222#s3cret", ["malformed tls"]),
        ("amqp://u:s3cret@127.0.0.1:5672/?ca=/etc/ca.pem", ["needs amqps://"]),
        ("amqps://u:s3cret@127.0.0.1:5672/?ca=", ["non-empty ca"]),
        ("amqp://u:s3cret@127.0.0.1:5672/?s3cret", ["malformed query"]),
    ],
)
def test_open_topic_rejects_bad_urls_without_leaking_secrets(
    url: str, fragments: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TopicError) as caught:
        open_topic(url, default_name="jobs")
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert "s3cret" not in message
    assert caught.value.__cause__ is None
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_nats_topic_names_must_make_subjects() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        open_topic(f"nats://{LOOPBACK}:1?topic=a.b", default_name="jobs")


@pytest.fixture
def cleanup() -> Iterator[list[tuple[str, str]]]:
    """(kind, topic name) pairs whose broker objects a test leaves to delete."""
    left: list[tuple[str, str]] = []
    yield left
    for kind, name in left:
        BACKENDS[kind](Path()).cleanup(name, [])


def _round_trip(topic: Topic) -> None:
    message_id = topic.publish("over the wire")
    delivery = topic.receive(wait=5)[0]
    assert (delivery.message_id, delivery.body) == (message_id, "over the wire")
    topic.ack(delivery)
    assert topic.pending() == 0


@pytest.mark.parametrize(
    ("kind", "url", "cls"),
    [
        ("redis", f"redis://{LOOPBACK}:6379", "RedisTopic"),
        ("nats", f"nats://{LOOPBACK}:4222", "NatsTopic"),
        ("amqp", f"amqp://guest:guest@{LOOPBACK}:5672", "AmqpTopic"),
    ],
)
def test_open_topic_picks_the_backend_by_scheme(
    kind: str, url: str, cls: str, cleanup: list[tuple[str, str]]
) -> None:
    require_broker(kind)
    name = f"t-{uuid.uuid4().hex[:12]}"
    cleanup.append((kind, name))
    topic = open_topic(url, default_name=name, visibility_timeout=5, max_deliveries=2)
    try:
        assert type(topic).__name__ == cls
        assert topic.name == name
        _round_trip(topic)
    finally:
        topic.close()


@pytest.fixture
def redis_user() -> Iterator[str]:
    """A Redis ACL user with password ``SECRET``, removed afterwards."""
    require_broker("redis")
    user = f"ecs-detach-test-{uuid.uuid4().hex[:8]}"
    with RedisBackend(Path()).client() as client:
        client.acl_setuser(user, enabled=True, passwords=[f"+{SECRET}"], keys=["*"], commands=["+@all"])
        try:
            yield user
        finally:
            client.acl_deluser(user)


@pytest.mark.parametrize("kind", ["redis", "nats", "amqp"])
def test_credentials_from_the_url_work_and_never_show(
    kind: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    cleanup: list[tuple[str, str]],
) -> None:
    require_broker(kind)
    name = f"t-{uuid.uuid4().hex[:12]}"
    cleanup.append((kind, name))
    # The test brokers know one login each: an ACL user made here, any (NATS without auth),
    # guest:guest (RabbitMQ, whose user and password are the same word: the check is that the
    # password never shows after "guest:").
    secret, url = {
        "redis": lambda: (
            SECRET,
            f"redis://{request.getfixturevalue('redis_user')}:{SECRET}@{LOOPBACK}:6379/0",
        ),
        "nats": lambda: (SECRET, f"nats://someone:{SECRET}@{LOOPBACK}:4222"),
        "amqp": lambda: (":guest@", f"amqp://guest:guest@{LOOPBACK}:5672/"),
    }[kind]()
    caplog.set_level(logging.DEBUG)
    topic = open_topic(f"{url}?topic={name}", default_name="jobs")
    try:
        _round_trip(topic)
        assert secret.strip(":@") not in repr(topic)
        assert "***@" in repr(topic)
    finally:
        topic.close()
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("redis", f"redis://nobody:{SECRET}@{LOOPBACK}:6379/0"),
        ("amqp", f"amqp://guest:{SECRET}@{LOOPBACK}:5672/"),
        ("nats", f"tls://someone:{SECRET}@{LOOPBACK}:4222"),  # refused before sending them
        ("amqp", f"amqps://guest:{SECRET}@{LOOPBACK}:5672/"),  # no TLS on that port
    ],
)
def test_refused_credentials_never_show(kind: str, url: str, caplog: pytest.LogCaptureFixture) -> None:
    require_broker(kind)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TopicError) as caught:
        open_topic(url, default_name=f"t-{uuid.uuid4().hex[:12]}")
    assert f"{LOOPBACK}:{PORTS[kind]}" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in caplog.text


TLS_URLS = {
    "redis": "rediss://{host}:{port}/0?topic={name}",
    "nats": "tls://{host}:{port}?topic={name}",
    "amqp": "amqps://guest:guest@{host}:{port}/?topic={name}",
}


@pytest.mark.parametrize("kind", list(TLS_URLS))
def test_tls_with_a_ca_from_the_url(
    kind: str, server_tls: ssl.SSLContext, certificate: Path, cleanup: list[tuple[str, str]]
) -> None:
    require_broker(kind)
    name = f"t-{uuid.uuid4().hex[:12]}"
    cleanup.append((kind, name))
    with proxy_to(PORTS[kind], server_tls, nats_tls=kind == "nats") as proxy:
        url = TLS_URLS[kind].format(host=LOOPBACK, port=proxy.port, name=name)
        with pytest.raises(TopicError, match="CERTIFICATE_VERIFY_FAILED"):
            open_topic(url, default_name="jobs")  # the system CAs do not know this certificate
        topic = open_topic(f"{url}&ca={certificate}", default_name="jobs")
        try:
            _round_trip(topic)
        finally:
            topic.close()

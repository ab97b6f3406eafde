"""One redaction (handler/support/log.py) for every URL and error text that can carry credentials:
topics, stores, push endpoints, SMN, proxies, the ``up`` banner and the log lines."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from handler.cloud import EcsClient, TransportError
from handler.store import StoreError, open_store
from handler.support.log import LOGGER_NAME, MASK, JsonFormatter, log_event, redact_text, redact_url
from handler.topics import TopicError, open_topic
from tests.conftest import DEMO_CREDENTIALS
from tests.entry.test_cli import CLI, _env, _free_port
from tests.topics.conftest import require_broker

SECRET = "s3cret-" + uuid.uuid4().hex[:10]
PID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///.ecs-detach/topics.db?topic=jobs", "sqlite:///.ecs-detach/topics.db?topic=jobs"),
        (f"redis://:{SECRET}@cache:6379/0?topic=jobs", "redis://***@cache:6379/0?topic=jobs"),
        (
            f"rediss://user:{SECRET}@cache:6380/1?ca=/etc/ca.pem&prefix=prod",
            "rediss://***@cache:6380/1?ca=/etc/ca.pem&prefix=prod",
        ),
        (f"nats://user:{SECRET}@nats:4222?topic=jobs", "nats://***@nats:4222?topic=jobs"),
        (f"nats://{SECRET}@nats:4222?topic=jobs", "nats://***@nats:4222?topic=jobs"),  # a token
        (f"tls://{SECRET}@nats:4222?topic=r&ca=/ca.pem", "tls://***@nats:4222?topic=r&ca=/ca.pem"),
        (f"amqp://guest:{SECRET}@mq:5672/vhost?topic=jobs", "amqp://***@mq:5672/vhost?topic=jobs"),
        (f"amqps://guest:{SECRET}@mq/?topic=jobs", "amqps://***@mq/?topic=jobs"),
        (f"smn://urn:smn:ap-southeast-1:{PID}:jobs", f"smn://urn:smn:ap-southeast-1:{PID}:jobs"),
        (f"https://user:{SECRET}@hooks.example/results", "https://***@hooks.example/results"),
        (
            f"https://hooks.example/services/T0001/B0002/{SECRET}X9?token={SECRET}&topic=r",
            "https://hooks.example/services/T0001/B0002/***?token=***&topic=r",
        ),
        (f"http://proxy:3128/?password={SECRET}&sig={SECRET}", "http://proxy:3128/?password=***&sig=***"),
        (f"https://h/x?code={SECRET}&{SECRET}#{SECRET}", "https://h/x?code=***"),  # unknown: value hidden
        (f"redis://:pa/ss{SECRET}@cache/0", "redis://***@cache/0"),  # unencoded "/" in the password
        (f"user:{SECRET}@host", "***@host"),  # no scheme
    ],
)
def test_a_url_keeps_what_is_useful_and_nothing_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


def test_every_url_in_an_error_text_is_redacted_and_known_secrets_masked() -> None:
    text = (
        f"Unable to connect to proxy 'http://u:{SECRET}@proxy:3128' "
        f"(for https://hooks.example/x?key={SECRET}), auth {SECRET} refused"
    )
    safe = redact_text(text, SECRET)
    assert SECRET not in safe
    assert "'http://***@proxy:3128'" in safe
    assert "https://hooks.example/x?key=***" in safe


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_https_push_topic_keeps_its_password_out_of_the_error(caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_port()
    url = f"http://user:{SECRET}@127.0.0.1:{port}/hook?token={SECRET}"
    topic = open_topic(url, default_name="results")
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(TopicError) as caught:
            topic.publish("{}")
    finally:
        topic.close()
    message = str(caught.value)
    assert f"push to http://***@127.0.0.1:{port}/hook?token=*** failed: ConnectError" in message
    assert SECRET not in message + repr(caught.value) + caplog.text


def _open_and_publish(url: str) -> None:
    topic = open_topic(url, default_name="jobs")  # NATS and RabbitMQ connect here, Redis lazily
    try:
        topic.publish("{}")
    finally:
        topic.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://:{secret}@127.0.0.1:{port}/0",
        "nats://{secret}@127.0.0.1:{port}",  # token in the userinfo
        "nats://user:{secret}@127.0.0.1:{port}",
        "amqp://guest:{secret}@127.0.0.1:{port}/",
    ],
)
@pytest.mark.slow
def test_a_broker_that_cannot_be_reached_names_it_without_credentials(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TopicError) as caught:
        _open_and_publish(url.format(secret=SECRET, port=port))
    message = str(caught.value)
    assert f"***@127.0.0.1:{port}" in message
    assert SECRET not in message + repr(caught.value) + caplog.text


def test_a_redis_store_that_cannot_be_reached_names_it_without_credentials() -> None:
    port = _closed_port()
    store = open_store(f"redis://user:{SECRET}@127.0.0.1:{port}/0?prefix=p")
    try:
        with pytest.raises(StoreError) as caught:
            store.begin("k", "fp", in_progress_ttl_s=1)
    finally:
        store.close()
    assert f"redis://***@127.0.0.1:{port}/0?prefix=p" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_proxy_with_credentials_stays_out_of_cloud_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://proxyuser:{SECRET}@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ecs = EcsClient("http://ecs.example.invalid", DEMO_CREDENTIALS)
    try:
        with pytest.raises(TransportError) as caught:
            ecs.show_job("ff8080820000000000000000deadbeef")
    finally:
        ecs.close()
    # The proxy was used, and refused the connection (the endpoint's name does not resolve).
    assert "ConnectError" in str(caught.value)
    assert "refused" in str(caught.value)
    assert SECRET not in str(caught.value)


def _log_line(event: str, **fields: Any) -> str:
    """The line the JSON formatter writes for ``event`` logged at ERROR with ``fields``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        log_event(event, level=logging.ERROR, **fields)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_log_line_never_shows_a_url_credential() -> None:
    line = _log_line("flush.failed", error=f"TopicError: push to https://u:{SECRET}@h/x?sig={SECRET} failed")
    assert "push to https://***@h/x?sig=*** failed" in line
    assert SECRET not in line


@pytest.mark.parametrize(
    "name",
    [
        "sk",
        "SK",
        "secret_key",
        "SecretKey",
        "security_token",
        "X-Security-Token",
        "password",
        "authorization",
        "signature",
        "webhook_signature",
        "PASSWORD",
    ],
)
def test_a_field_whose_name_says_secret_is_masked_in_any_case(name: str) -> None:
    text = _log_line("test.masked", **{name: SECRET, "skew_s": 3, "task": "kept"})
    line = json.loads(text)
    assert line[name] == MASK
    assert (line["skew_s"], line["task"]) == (3, "kept")  # "sk" and "ask" inside a name are not secret
    assert SECRET not in text


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A topic prefix of this test alone; its keys are deleted afterwards."""
    require_broker("redis")
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        for key in client.scan_iter(match=f"ecs-detach:{{{prefix}-*"):
            client.delete(key)
    finally:
        client.close()


def test_up_shows_each_topic_whole_and_redacted(redis_prefix: str) -> None:
    base = f"redis://:{SECRET}@127.0.0.1:6379/0?topic={redis_prefix}"
    process = subprocess.Popen(
        [*CLI, "up", "--port", str(_free_port()), "--emulator-port", "0", "--topics", base],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("results topic"):
                break
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=30)[0]
    output = "".join(lines) + rest
    assert f"jobs topic        redis://***@127.0.0.1:6379/0?topic={redis_prefix}-jobs\n" in output
    assert f"results topic     redis://***@127.0.0.1:6379/0?topic={redis_prefix}-results\n" in output
    assert SECRET not in output

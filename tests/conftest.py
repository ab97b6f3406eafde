"""Shared fixtures: the emulator on a real loopback port, a runtime wired to it, the chat
platforms' receiver, and a capture of every log record."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app, load_seed
from handler.cloud import Credentials
from handler.entry.runtime import Runtime, build_runtime
from handler.local._serve import BackgroundServer
from handler.settings import Settings
from handler.support.log import LOGGER_NAME
from tests.support import Receiver, receiving

WEBHOOK_TOKEN = "test-webhook-token-0123456789"
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
DEMO_CREDENTIALS = Credentials(
    access_key=DEMO_CREDENTIAL.access_key,
    secret_key=SecretStr(DEMO_CREDENTIAL.secret_key),
    project_id=DEMO_CREDENTIAL.project_id,
)


@dataclass
class Emulator:
    backend: EcsBackend
    url: str

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=5)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(job_init_s=0.05, job_duration_s=0.4)
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL], config=config)
    with BackgroundServer(create_app(backend)) as server:
        yield Emulator(backend, server.url)


def fast_settings(tmp_path: Path, endpoint: str, **overrides: Any) -> Settings:
    db = f"sqlite:///{tmp_path}/topics.db"
    values: dict[str, Any] = {
        "ecs_endpoint": endpoint,
        "jobs_topic": f"{db}?topic=jobs",
        "results_topic": f"{db}?topic=results",
        "store": f"sqlite:///{tmp_path}/store.db",
        "history": f"sqlite:///{tmp_path}/history.db",
        "first_poll_s": 0.1,
        "min_poll_delay_s": 0.1,
        "max_poll_delay_s": 0.3,
        "visibility_timeout_s": 5.0,
        "queue_check_s": 0.2,
        "webhook_bearer_tokens": [WEBHOOK_TOKEN],
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def runtime(tmp_path: Path, emulator: Emulator) -> Iterator[Runtime]:
    rt = build_runtime(fast_settings(tmp_path, emulator.url), DEMO_CREDENTIALS)
    yield rt
    rt.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The chat platforms' incoming webhooks on loopback, recording what they are sent."""
    with receiving() as box:
        yield box


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


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate (and its key, ``key.pem`` beside it) for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", "key.pem", "-out", "cert.pem"),
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return folder / "cert.pem"


@pytest.fixture
def server_tls(certificate: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, certificate.with_name("key.pem"))
    return context

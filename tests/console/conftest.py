"""A running deployment for the console's tests: the emulator (one server named with HTML in
it), the webhook app with the console (``runtime_app``) on loopback with the limits
``ecs-detach up`` serves it with, and a poll worker.

Approvals are asked for forced detaches only, so a test can make requests that go straight
through and requests that wait for a person. People: alice and bob may approve, reader may
only read; the webhook token ``tok-alice`` sends requests as alice (four eyes keeps her from
approving them)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app, load_seed
from handler.entry.runtime import Runtime, build_runtime
from handler.local._serve import BackgroundServer, ServerLimits
from handler.local.http import runtime_app
from handler.local.worker import Worker, poll_job
from handler.security import hash_password
from tests.conftest import DEMO_CREDENTIALS, WEBHOOK_TOKEN, fast_settings
from tests.support import WEB2

SEED = Path(__file__).resolve().parents[2] / "emulator" / "default_seed.json"
HOSTILE_NAME = '<img src=x onerror="document.title=1"><b>web-2</b>'
PASSWORDS = {"alice": "alice-pw-0123", "bob": "bob-pw-0123", "reader": "reader-pw-0123"}
ALICE_TOKEN = "tok-alice-0123456789"
CONSOLE_TOKEN = "tok-console-0123456789"  # a webhook credential that may read the console
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@dataclass
class Deployment:
    runtime: Runtime
    url: str
    backend: EcsBackend

    def detach(self, body: dict[str, Any], *, token: str = WEBHOOK_TOKEN) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code in (200, 202, 409), answer.text  # 409: refused (by the policy)
        record: dict[str, Any] = answer.json()["records"][0]
        return record

    def get(self, path: str, user: str | None = "reader", **kwargs: Any) -> httpx.Response:
        auth = (user, PASSWORDS[user]) if user else None
        return httpx.get(f"{self.url}{path}", auth=auth, timeout=10, **kwargs)


@functools.cache
def password_hash(user: str) -> str:
    """Each user's hash, made once (a scrypt takes a while)."""
    return hash_password(PASSWORDS[user])


def seed_with_hostile_name(tmp_path: Path) -> Path:
    seed = json.loads(SEED.read_text())
    for server in seed["servers"]:
        if server["id"] == WEB2:
            server["name"] = HOSTILE_NAME
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    return path


def deployment(tmp_path: Path, **overrides: Any) -> Iterator[Deployment]:
    config = EmulatorConfig(job_init_s=0.05, job_duration_s=0.4)
    backend = EcsBackend.from_seed(
        load_seed(seed_with_hostile_name(tmp_path)), credentials=[DEMO_CREDENTIAL], config=config
    )
    users = [
        {"name": "alice", "password_hash": password_hash("alice"), "approve": True},
        {"name": "bob", "password_hash": password_hash("bob"), "approve": True},
        {"name": "reader", "password_hash": password_hash("reader")},
    ]
    with BackgroundServer(create_app(backend)) as emulator:
        values: dict[str, Any] = {
            "allow_force": True,
            "approval_mode": "rules",
            "approval_force": True,
            "webhook_bearer_tokens": [
                WEBHOOK_TOKEN,
                {"secret": ALICE_TOKEN, "name": "alice"},
                {"secret": CONSOLE_TOKEN, "routes": ["/console"], "name": "dashboard"},
            ],
            "console_users": users,
        }
        settings = fast_settings(tmp_path, emulator.url, **(values | overrides))
        runtime = build_runtime(settings, DEMO_CREDENTIALS)
        worker = Worker(runtime.jobs, poll_job(runtime), retry_delay_s=0.1, wait_s=0.1).start()
        try:
            limits = ServerLimits.from_settings(settings)  # as `ecs-detach up` serves it
            with BackgroundServer(runtime_app(runtime), limits=limits) as server:
                yield Deployment(runtime, server.url, backend)
        finally:
            worker.stop()
            runtime.close()


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployment]:
    yield from deployment(tmp_path)

"""The real Prometheus Alertmanager notifying the webhook, with the README's configuration.

Alertmanager (Debian's ``prometheus-alertmanager``, installed by .ci/run) runs on a free
loopback port with the ``alertmanager.yml`` of the README, changed only in its URL, its token
file and its intervals (seconds instead of minutes). A firing alert posted to its API v2 must
detach once; its repeats are answered as duplicates; the resolved notification is ignored.
Skips without the binary, except under CI=true, where that fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handler.entry.runtime import Runtime
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from tests.conftest import WEBHOOK_TOKEN, Emulator
from tests.support import PID, WEB1, WEB1_DATA

README = Path(__file__).resolve().parents[2] / "README.md"
BINARY = "prometheus-alertmanager"


def readme_config() -> dict[str, Any]:
    """The ``# alertmanager.yml`` block of the README."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if b.startswith("# alertmanager.yml")]
    config: dict[str, Any] = yaml.safe_load(block)
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Answers:
    """Every answer of the webhook to Alertmanager, as it left the server."""

    seen: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            status, body = 0, b""

            async def keep(message: Message) -> None:
                nonlocal status, body
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body":
                    body += message.get("body", b"")
                await send(message)

            await app(scope, receive, keep)
            if scope["type"] == "http" and scope["path"] == "/alertmanager":
                self.seen.append((status, json.loads(body)))

        return recording

    def statuses(self) -> list[str]:
        return [record["status"] for _, answer in self.seen for record in answer.get("records", [])]

    def wait_for(self, ready: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not ready(self.statuses()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the webhook answered {self.seen}")
            time.sleep(0.1)
        return self.statuses()


@pytest.fixture
def alertmanager_binary() -> str:
    path = shutil.which(BINARY)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no {BINARY}, and CI=true: .ci/run should have installed it")
        pytest.skip(f"needs {BINARY} (apt-get install prometheus-alertmanager)")
    return path


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def webhook(runtime: Runtime, answers: Answers) -> Iterator[str]:
    app = runtime_app(runtime)
    with BackgroundServer(answers.wrap(app)) as server:
        yield server.url


@pytest.fixture
def alertmanager(alertmanager_binary: str, webhook: str, tmp_path: Path) -> Iterator[str]:
    token = tmp_path / "ecs-detach-token"
    token.write_text(WEBHOOK_TOKEN + "\n")
    config = readme_config()
    (route,) = config["route"]["routes"]
    route.update(group_wait="1s", group_interval="1s", repeat_interval="2s")
    (receiver,) = [r for r in config["receivers"] if r["name"] == route["receiver"]]
    (webhook_config,) = receiver["webhook_configs"]
    webhook_config["url"] = f"{webhook}/alertmanager"
    webhook_config["http_config"]["authorization"]["credentials_file"] = str(token)
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            alertmanager_binary,
            f"--config.file={config_file}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: one instance
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log = (tmp_path / "alertmanager.log").read_text()
                raise AssertionError(f"Alertmanager did not start:\n{log}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
def test_a_firing_alert_detaches_once_and_its_resolution_is_ignored(
    alertmanager: str, answers: Answers, emulator: Emulator
) -> None:
    starts = datetime.now(timezone.utc) - timedelta(minutes=1)
    alert: dict[str, Any] = {
        "labels": {
            "alertname": "NodeDiskIOStalled",
            "action": "ecs-detach",
            "server_id": WEB1,
            "device": "vdb",
            "project_id": PID,
        },
        "annotations": {"summary": "I/O on vdb of web-1 stalled"},
        "startsAt": starts.isoformat(),
    }
    posted = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    assert posted.status_code == 200, posted.text

    statuses = answers.wait_for(lambda s: s.count("duplicate") >= 2)  # two repeats at least
    assert statuses[0] == "accepted"
    assert set(statuses[1:]) == {"duplicate"}
    assert all(status == 202 for status, _ in answers.seen)
    calls = emulator.admin("GET", "calls")["calls"]
    detaches = [c["path"] for c in calls if c["method"] == "DELETE"]
    assert len(detaches) == 1
    assert detaches[0].endswith(f"/detachvolume/{WEB1_DATA}")  # vdb resolved to its volume

    ended = {**alert, "endsAt": datetime.now(timezone.utc).isoformat()}
    assert httpx.post(f"{alertmanager}/api/v2/alerts", json=[ended], timeout=5).status_code == 200
    answers.wait_for(lambda s: "ignored" in s)
    status, answer = answers.seen[-1]
    assert (status, answer["records"][0]["status"]) == (200, "ignored")
    assert "resolved" in answer["records"][0]["detail"]
    calls = emulator.admin("GET", "calls")["calls"]
    assert [c["method"] for c in calls].count("DELETE") == 1

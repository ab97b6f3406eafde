"""The functions-framework target serves the same webhook routes in a container."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import functions_framework
import httpx
import pytest

from emulator import DEMO_CREDENTIAL
from handler.local import container
from handler.local.console.app import CSP
from handler.sources import parse_request
from tests.conftest import Emulator
from tests.support import WEB1, WEB1_DATA

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_functions_framework_target(tmp_path: Path, emulator: Emulator) -> None:
    port = _free_port()
    db = f"sqlite:///{tmp_path}/topics.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ECS_DETACH_", "HUAWEICLOUD_SDK_"))},
        "ECS_DETACH_ECS_ENDPOINT": emulator.url,
        "ECS_DETACH_JOBS_TOPIC": f"{db}?topic=jobs",
        "ECS_DETACH_RESULTS_TOPIC": f"{db}?topic=results",
        "ECS_DETACH_WEBHOOK_BEARER_TOKENS": json.dumps(
            ["old-token", "new-token", {"secret": "console-token", "routes": ["/console"]}]
        ),
        "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
        "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "functions-framework"),
            "--source",
            str(ROOT / "handler" / "local" / "container.py"),
            "--target",
            "webhook",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "functions-framework did not start"
                time.sleep(0.2)
        alert = json.loads((ROOT / "events" / "alertmanager-firing.json").read_text())
        refused = httpx.post(f"{url}/alertmanager", json=alert, timeout=10)
        assert refused.status_code == 401
        auth = {"Authorization": "Bearer new-token"}
        answer = httpx.post(f"{url}/alertmanager", json=alert, headers=auth, timeout=10)
        assert answer.status_code == 202, answer.text
        assert answer.json()["records"][0]["status"] == "accepted"
        bad = httpx.post(
            f"{url}/", content=b"{", headers={"Content-Type": "application/json", **auth}, timeout=10
        )
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        # the web console, behind the same authentication: a credential must name /console
        assert httpx.get(f"{url}/console", headers=auth, timeout=10).status_code == 403
        console = httpx.get(f"{url}/console", headers={"Authorization": "Bearer console-token"}, timeout=10)
        assert console.status_code == 200, console.text
        assert console.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<h1>Requests</h1>" in console.text
        css = httpx.get(
            f"{url}/console/static/console.css", headers={"Authorization": "Bearer console-token"}, timeout=10
        )
        assert css.headers["content-type"].startswith("text/css")
        # every method and a form too large are the console's answers, with its headers
        reader = {"Authorization": "Bearer console-token"}
        for method in ("TRACE", "DELETE", "OPTIONS"):
            odd = httpx.request(method, f"{url}/console", headers=reader, timeout=10)
            assert odd.status_code == 405, (method, odd.status_code)
            assert odd.headers["content-security-policy"] == CSP
        form = f"{url}/console/approvals/{'0' * 32}"
        huge = httpx.post(form, data={"c": "x" * 300_000}, headers=reader, timeout=10)
        assert huge.status_code == 413
        assert huge.headers["content-security-policy"] == CSP
        assert "form: at most 262144 bytes" in huge.text
    finally:
        server.terminate()
        server.wait(10)


def test_the_poll_target_takes_accepted_cloudevents_as_a_broker_delivers_them(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Knative: the jobs topic reaches ``poll`` as CloudEvents in binary mode; a running job
    goes back to the jobs topic, a finished one ends in a result, anything else is a 422."""
    db = f"sqlite:///{tmp_path}/topics.db"
    for name, value in {
        "ECS_DETACH_ECS_ENDPOINT": emulator.url,
        "ECS_DETACH_JOBS_TOPIC": f"{db}?topic=jobs",
        "ECS_DETACH_RESULTS_TOPIC": f"{db}?topic=results",
        "ECS_DETACH_STORE": f"sqlite:///{tmp_path}/store.db",
        "ECS_DETACH_FIRST_POLL_S": "0.1",
        "ECS_DETACH_MIN_POLL_DELAY_S": "0.1",
        "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
        "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(container, "_runtime", None)
    app = functions_framework.create_app(target="poll", source=str(ROOT / "handler/local/container.py"))
    client = app.test_client()
    runtime = container._runtime_once()
    try:
        outcome = runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
        statuses = []
        deadline = time.monotonic() + 15
        while "finished" not in statuses and time.monotonic() < deadline:
            for delivery in runtime.jobs.receive(1, wait=0.5):
                event = json.loads(delivery.body)
                headers = {
                    f"ce-{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")
                }
                answer = client.post(
                    "/",
                    data=json.dumps(event["data"]),
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert answer.status_code == 200, answer.get_data(as_text=True)
                runtime.jobs.ack(delivery)
                statuses.append(answer.get_json()["status"])
        assert statuses[-1] == "finished"
        assert "continued" in statuses
        (result,) = [json.loads(d.body) for d in runtime.results.receive(10, wait=1)]
        assert result["data"]["job_id"] == outcome.job_id
        wrong = client.post("/", json={"specversion": "1.0", "type": "something.else"})
        assert wrong.status_code == 422
        assert client.get("/healthz").status_code == 200
    finally:
        runtime.close()
        container._runtime = None

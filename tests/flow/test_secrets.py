"""No SK, security token, webhook secret or Authorization header in any log line, error or event."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from handler.entry import functiongraph
from handler.topics import open_topic
from tests.entry.test_cli import CLI, _env, _free_port, _wait_for_http
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS

SK = "known-secret-key-Zq9vX2mB7kL4pR8s"
TOKEN = "known-security-token-Hn3Jd8Kx5Wq1"
BEARER = "known-webhook-bearer-Vt6Yc2Np9Ls4"
HMAC = "known-webhook-hmac-Gb7Mf1Qz3Rw8"
SECRETS = (SK, TOKEN, BEARER, HMAC)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked: ...{secret[-6:]}"
    assert "Authorization" not in text or "Bearer " + BEARER not in text


@pytest.mark.slow
def test_a_full_run_of_up_leaks_no_secret(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **_env(),
        "HUAWEICLOUD_SDK_AK": "KNOWNACCESSKEY000001",
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": PID,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN,
        "ECS_DETACH_WEBHOOK_BEARER_TOKENS": f'["{BEARER}"]',
        "ECS_DETACH_WEBHOOK_HMAC_SECRETS": f'["{HMAC}"]',
        "ECS_DETACH_LOG_LEVEL": "DEBUG",
    }
    stack = subprocess.Popen(
        [*CLI, "up", "--port", str(port), "--emulator-port", "0", "--job-duration", "0.5"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    answers = []
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/"
        body = {"server_id": WEB1, "volume_id": WEB1_DATA}
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {BEARER}"}):
            answers.append(httpx.post(url, json=body, headers=headers, timeout=10).text)
        answers.append(httpx.post(url, content=b"{", headers={"Authorization": f"Bearer {BEARER}"}).text)
        results = open_topic(
            f"sqlite:///{tmp_path}/.ecs-detach/topics.db?topic=results", default_name="results"
        )
        deadline = time.monotonic() + 20
        events: list[str] = []
        while not events and time.monotonic() < deadline:
            events = [d.body for d in results.receive(5, wait=0.5)]
        results.close()
        assert events, "no result event"
    finally:
        stack.send_signal(signal.SIGTERM)
        output = stack.communicate(timeout=30)[0]
    assert '"status":"accepted"' in answers[1]
    _assert_clean(output + "".join(answers) + "".join(events))


def test_the_function_logs_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = f"sqlite:///{tmp_path}/topics.db"
    for name, value in {
        "ECS_DETACH_ECS_ENDPOINT": "http://127.0.0.1:9",  # nothing listens: errors are logged
        "ECS_DETACH_JOBS_TOPIC": f"{db}?topic=jobs",
        "ECS_DETACH_RESULTS_TOPIC": f"{db}?topic=results",
        "ECS_DETACH_STORE": f"sqlite:///{tmp_path}/store.db",
        "ECS_DETACH_HISTORY": f"sqlite:///{tmp_path}/history.db",
        "ECS_DETACH_WEBHOOK_BEARER_TOKENS": f'["{BEARER}"]',
        "HUAWEICLOUD_SDK_AK": "KNOWNACCESSKEY000001",
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": PID,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(functiongraph, "_runtime", None)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(functiongraph.RetryLater) as retry:  # the cloud did not answer
            functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_LOGS})
        replies = [
            functiongraph.handler({"server_id": "nope"}),
            functiongraph.handler(
                {
                    "httpMethod": "POST",
                    "path": "/",
                    "headers": {"authorization": "Bearer wrong", "content-type": "application/json"},
                    "body": "{}",
                    "isBase64Encoded": False,
                }
            ),
        ]
    finally:
        if functiongraph._runtime is not None:
            functiongraph._runtime.close()
    records = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert replies[1]["statusCode"] == 401
    _assert_clean(records + repr(replies) + str(retry.value))

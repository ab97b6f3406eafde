"""``ecs-detach up`` with notify channels, as a person runs it: the real process, a detach over
its webhook, and the message arriving at a chat platform's receiver on loopback (the Slack and
Teams formats checked as in tests/functions/test_notify.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.entry.test_cli import CLI, _env, _free_port, _wait_for_http
from tests.support import WEB1, WEB1_DATA, Receiver


@pytest.mark.slow
def test_up_sends_each_result_to_the_notify_channels(tmp_path: Path, receiver: Receiver) -> None:
    channels = [
        {"name": "ops", "kind": "slack", "url": f"{receiver.url}/slack"},
        {"name": "team", "kind": "teams", "url": f"{receiver.url}/teams", "outcomes": ["failed"]},
    ]
    port, emulator_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [*CLI, "up", "--port", str(port), "--emulator-port", str(emulator_port), "--job-duration", "0.5"],
        env={**_env(), "ECS_DETACH_NOTIFY_CHANNELS": json.dumps(channels)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/healthz")
        token = (tmp_path / ".ecs-detach" / "webhook-token").read_text().strip()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/",
            json={"server_id": WEB1, "volume_id": WEB1_DATA, "reason": "disk full"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        (job_id,) = answer.json()["job_ids"]
        deadline = time.monotonic() + 30
        while not receiver.received.get("slack") and time.monotonic() < deadline:
            time.sleep(0.1)
        (message,) = receiver.received.get("slack", [])
        text = json.dumps(message)
        assert job_id in text
        assert WEB1_DATA in text
        assert "actions" not in {block["type"] for block in message["blocks"]}  # a result: no buttons
        time.sleep(1.0)  # a second message, or one to the channel that takes only failures, would be here
        assert len(receiver.received["slack"]) == 1
        assert "teams" not in receiver.received
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate(timeout=10)[0]
    assert receiver.url not in output  # a channel's URL is a secret: never printed

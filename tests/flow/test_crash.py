"""A poll worker process killed mid-message: the message comes back and completes exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from handler.core.outcomes import DetachStatus
from handler.entry.runtime import Runtime
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from tests.conftest import DEMO_CREDENTIALS
from tests.flow.test_flow import attached, next_result
from tests.support import WEB1, WEB1_DATA

WORKER_SCRIPT = textwrap.dedent(
    """
    import time
    from handler.entry.runtime import build_runtime
    from handler.local.worker import Worker, poll_job
    from handler.settings import CloudCredentials, Settings

    runtime = build_runtime(Settings(), CloudCredentials().credentials())
    Worker(runtime.jobs, poll_job(runtime), wait_s=0.1).start()
    time.sleep(120)
    """
)


@pytest.mark.slow
def test_worker_killed_before_ack(tmp_path: Path, runtime: Runtime) -> None:
    assert runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA})).status is (
        DetachStatus.ACCEPTED
    )
    # The doomed worker's ECS endpoint accepts connections and never answers: it is caught
    # holding the message's lease, mid-poll, when it is killed.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen()
        black_hole.settimeout(20)
        env = {
            **os.environ,
            "ECS_DETACH_ECS_ENDPOINT": f"http://127.0.0.1:{black_hole.getsockname()[1]}",
            "ECS_DETACH_JOBS_TOPIC": runtime.settings.jobs_topic,
            "ECS_DETACH_RESULTS_TOPIC": runtime.settings.results_topic,
            "ECS_DETACH_STORE": runtime.settings.store,
            "ECS_DETACH_VISIBILITY_TIMEOUT_S": "2",
            "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIALS.access_key,
            "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIALS.secret_key.get_secret_value(),
            "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIALS.project_id or "",
        }
        doomed = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT], env=env, cwd=tmp_path)
        try:
            connection, _ = black_hole.accept()  # the doomed worker is now polling
            connection.close()
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
    assert doomed.returncode == -signal.SIGKILL
    assert runtime.results.receive(1) == []  # it died before finishing anything

    started = time.monotonic()
    survivor = Worker(runtime.jobs, poll_job(runtime), wait_s=0.1).start()
    try:
        result = next_result(runtime)
        assert result.type == "ecs-detach.succeeded"
        assert time.monotonic() - started >= 1.0  # it waited out the dead worker's 2 s lease
        time.sleep(1.0)
        assert runtime.results.receive(1) == []  # exactly one result
        assert runtime.jobs.pending() == 0
    finally:
        survivor.stop()
    assert WEB1_DATA not in attached(runtime, WEB1)

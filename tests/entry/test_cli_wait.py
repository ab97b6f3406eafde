"""``ecs-detach detach --wait`` while a poll worker follows the same job (the local stack's, or a
deployment's): the command waits for the worker's report, not for its claim to lapse."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app, load_seed
from handler.entry.runtime import Runtime, build_runtime
from handler.local import cli
from handler.local._serve import BackgroundServer
from handler.sources import parse_request
from handler.store import ClaimState
from tests.conftest import DEMO_CREDENTIALS, fast_settings
from tests.support import WEB1, WEB1_DATA


@pytest.fixture
def instant(tmp_path: Path) -> Iterator[Runtime]:
    """A deployment whose detach jobs have ended by the first look."""
    config = EmulatorConfig(job_init_s=0, job_duration_s=0)
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL], config=config)
    with BackgroundServer(create_app(backend)) as server:
        runtime = build_runtime(fast_settings(tmp_path, server.url), DEMO_CREDENTIALS)
        yield runtime
        runtime.close()


def test_wait_looks_again_soon_while_another_poll_reports_the_job(
    instant: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = parse_request({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "wait-1"})
    pause = time.sleep  # the command's sleep is replaced below; this one really pauses
    slept: list[float] = []
    job_ids: list[str] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:  # before the first look, a worker takes the job's event and reports it
            (delivery,) = instant.jobs.receive(1, wait=1.0)
            job_ids.append(json.loads(delivery.body)["data"]["job_id"])
            assert instant.detach.guard.claim_result(job_ids[0]).state is ClaimState.NEW
        elif len(slept) == 2:  # the command saw the job ended and the report under way
            instant.detach.guard.release_result(job_ids[0])  # the worker's publish failed: handed back
        pause(min(seconds, 0.1))

    monkeypatch.setattr(cli.time, "sleep", sleep)
    code = cli._detach_now(instant, request, wait=True, console=Console(file=io.StringIO()))

    assert code == cli.EXIT_OK
    assert len(slept) == 2
    assert slept[1] == cli._RECHECK_S  # not the claim's 60 s (invocation_timeout_s)
    (delivery,) = instant.results.receive(10, wait=1.0)  # the command's own look reported it
    event = json.loads(delivery.body)
    assert (event["type"], event["data"]["job_id"]) == ("ecs-detach.succeeded", job_ids[0])

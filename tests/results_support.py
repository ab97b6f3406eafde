"""A deployment whose results topic is on a broker under test: the runtime, its poll worker,
and what its own consumer of the results topic receives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.entry.runtime import Runtime, build_runtime
from handler.functions.detach import DetachStatus
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import WEB1, WEB1_DATA


@dataclass
class Deployment:
    """A runtime whose results topic is on the broker under test, with its poll worker."""

    runtime: Runtime
    results_url: str

    def detach(self, **request: Any) -> str:
        body = {"server_id": WEB1, "volume_id": WEB1_DATA, **request}
        outcome = self.runtime.detach(parse_request(body))
        assert outcome.status is DetachStatus.ACCEPTED
        assert outcome.job_id is not None
        return outcome.job_id

    def wait_for_result(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.runtime.results.pending() == 0:
            assert time.monotonic() < deadline, "no result event published"
            time.sleep(0.1)

    def consume(self) -> list[str]:
        """What the deployment's own consumer of the results topic receives (and acks)."""
        bodies = []
        for delivery in self.runtime.results.receive(10, wait=3):
            assert delivery.deliveries == 1  # nobody leased it before
            bodies.append(delivery.body)
            self.runtime.results.ack(delivery)
        return bodies


@contextmanager
def deployed(tmp_path: Path, emulator: Emulator, results_url: str) -> Iterator[Deployment]:
    runtime = build_runtime(
        fast_settings(tmp_path, emulator.url, results_topic=results_url), DEMO_CREDENTIALS
    )
    worker = Worker(runtime.jobs, poll_job(runtime), concurrency=1, wait_s=0.1).start()
    try:
        yield Deployment(runtime, results_url)
    finally:
        worker.stop()
        runtime.close()

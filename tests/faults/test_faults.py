"""The fault suite, reduced to fit ``make test`` (the full one: ``make faults``, docs/resilience.md):
on every backend, the flow survives a broker killed with -9 and restarted on its data, ``up``
killed, the worker killed, and senders that do not retry a 503 (tests/faults/harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import BACKENDS, Scenario, run
from tests.faults.instances import available

SCENARIOS = [Scenario(backend) for backend in BACKENDS] + [Scenario("redis", redis_store=True)]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.backend + ("+store" if s.redis_store else ""))
def test_every_accepted_request_ends_in_exactly_one_result(scenario: Scenario, tmp_path: Path) -> None:
    if scenario.backend != "sqlite" and not available(scenario.backend):
        pytest.skip(f"no {scenario.backend} server installed")

    report = run(scenario, tmp_path / scenario.backend)

    timeline = "\n".join(report.events)
    assert report.problems() == [], timeline
    assert len(report.accepted) >= scenario.requests, timeline
    assert sum(report.deletes.values()) == sum(report.results.values()), timeline

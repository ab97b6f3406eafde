"""The reduced storm (``make storm`` is the full one): detach events over HTTP against a faulty
emulator, through a real topic, with worker processes SIGKILLed and restarted; nothing is lost
and nothing is detached twice. Runs on the embedded SQLite topic and on Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.storm import StormConfig, check, run_storm, summary
from tests.topics.conftest import require_broker

pytestmark = pytest.mark.slow

BACKENDS = {"sqlite": "", "redis": "redis://127.0.0.1:6379/0"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(BACKENDS))
def test_reduced_storm_loses_nothing_and_detaches_nothing_twice(kind: str, tmp_path: Path) -> None:
    require_broker(kind)
    config = StormConfig(
        events=150,
        servers=60,
        workers=2,
        topics=BACKENDS[kind],
        seed=11,
        concurrency=4,
        kill_every_s=(2.0, 4.0),
        max_kills=3,
        timeout_s=200.0,
    )
    report = run_storm(config, tmp_path)
    table = summary(report)

    assert check(report) == [], table
    # The storm really was one: copies, faults and kills all happened.
    assert report.duplicates_published > 0, table
    assert report.faulted_calls > 0, table
    assert report.kills >= 1, table
    assert len(report.results) == config.events, table
    outcomes = {o for v in report.results.values() for o in v}
    assert "succeeded" in outcomes, table
    assert "failed" in outcomes, table  # 5 % of the jobs fail by design

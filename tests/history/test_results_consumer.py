"""The history fed by a consumer of the results topic (functions that cannot reach a database):
real result events of a real flow, delivered as FunctionGraph's SMN and DMS triggers deliver
them, become trails once, however often they come."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.entry import functiongraph
from handler.entry.runtime import Runtime, build_runtime
from handler.history import Query, open_history
from handler.history import results as consumer
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import WEB1, WEB1_DATA, WEB1_SYSTEM


@pytest.fixture
def functions(tmp_path: Path, emulator: Emulator) -> Iterator[Runtime]:
    """The functions with no history of their own: the consumer is the only writer."""
    runtime = build_runtime(fast_settings(tmp_path, emulator.url, history="off"), DEMO_CREDENTIALS)
    assert runtime.history is None
    worker = Worker(runtime.jobs, poll_job(runtime), concurrency=2, wait_s=0.1).start()
    yield runtime
    worker.stop()
    runtime.close()


@pytest.fixture
def recorder(history_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("ECS_DETACH_HISTORY", history_url)
    monkeypatch.setattr(consumer, "_history", None)
    yield history_url
    if consumer._history is not None:
        consumer._history.close()


def result_bodies(runtime: Runtime, count: int) -> list[str]:
    bodies: list[str] = []
    for _ in range(200):
        for delivery in runtime.results.receive(1, wait=0.2):
            runtime.results.ack(delivery)
            bodies.append(delivery.body.decode() if isinstance(delivery.body, bytes) else delivery.body)
        if len(bodies) == count:
            return bodies
    raise AssertionError(f"{len(bodies)} of {count} result events")


def smn_trigger(bodies: list[str]) -> dict[str, object]:
    return {
        "record": [
            {"event_source": "smn", "smn": {"message": body, "type": "notification"}} for body in bodies
        ]
    }


def test_result_events_become_trails_once(functions: Runtime, recorder: str) -> None:
    accepted = functions.detach(
        parse_request(
            {"server_id": WEB1, "volume_id": WEB1_DATA, "alert_id": "a-7", "origin": {"ticket": "INC-7"}}
        )
    )
    functions.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_SYSTEM}))  # refused: no job
    bodies = result_bodies(functions, 2)

    # As FunctionGraph calls it: index.history_handler, the entry's re-export of the consumer.
    assert functiongraph.history_handler(smn_trigger(bodies)) == {"messages": 2, "recorded": 2}
    again = {"records": [{"messages": [json.loads(body) for body in bodies]}], "trigger_type": "KAFKA"}
    assert consumer.handler(again) == {"messages": 2, "recorded": 0}  # delivered again: nothing new

    store = open_history(recorder)
    try:
        trails = {trail.outcome: trail for trail in store.query(Query())}
    finally:
        store.close()
    assert set(trails) == {"succeeded", "rejected"}
    done = trails["succeeded"]
    assert [step.event for step in done.steps] == ["detach.accepted", "detach.result"]
    assert done.job_id == accepted.job_id
    assert done.origin == {"ticket": "INC-7"}
    assert done.steps[0].fields["recorded_from"] == "result event"
    result = done.steps[1].fields
    assert (done.steps[1].at - done.started_at).total_seconds() == pytest.approx(result["duration_s"])
    refused = trails["rejected"]
    assert [step.event for step in refused.steps] == ["detach.result"]
    assert refused.steps[0].fields["error_code"] == "PolicySystemDisk"


def test_a_message_that_is_no_result_is_skipped(recorder: str) -> None:
    assert consumer.handler(smn_trigger(["{}", "not json"])) == {"messages": 2, "recorded": 0}

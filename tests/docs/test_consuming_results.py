"""docs/consuming-results.md: the result event schema and the example consumers, run for real.

Result events come from a real flow (the emulator, a runtime and its poll worker); each example
consumer runs as its own process against the real broker and must print the event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from handler.local.results import result_event_schema
from handler.sources import parse_request
from tests.conftest import Emulator
from tests.results_support import Deployment, deployed
from tests.support import WEB1, WEB1_DATA, WEB1_LOGS, WEB1_SYSTEM
from tests.topics.brokers import BACKENDS, PORTS
from tests.topics.conftest import require_broker

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "schema" / "result-event.schema.json"
EXAMPLES = ROOT / "docs" / "examples"


def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text()), format_checker=FormatChecker())


def test_the_checked_in_schema_is_the_models_schema() -> None:
    assert SCHEMA_FILE.read_text() == result_event_schema(), (
        "regenerate: ecs-detach results --schema > docs/schema/result-event.schema.json"
    )
    Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


@pytest.fixture
def sqlite_deployment(tmp_path: Path, emulator: Emulator) -> Iterator[Deployment]:
    with deployed(tmp_path, emulator, f"sqlite:///{tmp_path}/results.db?topic=results") as deployment:
        yield deployment


def test_real_result_events_match_the_schema(sqlite_deployment: Deployment, emulator: Emulator) -> None:
    runtime = sqlite_deployment.runtime
    runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA, "dry_run": True}))
    runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_SYSTEM}))  # the policy refuses
    emulator.admin(
        "PATCH", f"volumes/{WEB1_LOGS}", {"detach_fails_with": {"error_code": "Ecs.1000", "fail_reason": "x"}}
    )
    sqlite_deployment.detach(volume_id=WEB1_LOGS, idempotency_key="logs", origin={"ticket": "T-1"})
    deadline = time.monotonic() + 15
    while runtime.results.pending() < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    events = [json.loads(body) for body in sqlite_deployment.consume()]
    assert sorted(event["type"] for event in events) == [
        "ecs-detach.dry_run",
        "ecs-detach.failed",
        "ecs-detach.rejected",
    ]
    for event in events:
        assert list(validator().iter_errors(event)) == [], event
    broken = {**events[0], "data": {**events[0]["data"], "outcome": "exploded"}}
    assert [error.json_path for error in validator().iter_errors(broken)] == ["$.data.outcome"]
    sourceless = {key: value for key, value in events[0].items() if key != "source"}
    assert [error.message for error in validator().iter_errors(sourceless)] == [
        "'source' is a required property"
    ]


def run_example(name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), *args, "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},  # plain client code: nothing of ecs-detach
    )


def printed_event(process: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert process.returncode == 0, err
    (line,) = out.splitlines()[-1:]
    event: dict[str, Any] = json.loads(line)
    assert list(validator().iter_errors(event)) == []
    return event


BROKER_EXAMPLES = {
    "redis": ("redis_consumer.py", f"redis://127.0.0.1:{PORTS['redis']}/0"),
    "nats": ("nats_consumer.py", f"nats://127.0.0.1:{PORTS['nats']}"),
    "amqp": ("amqp_consumer.py", f"amqp://guest:guest@127.0.0.1:{PORTS['amqp']}/"),
}


@pytest.mark.parametrize("kind", list(BROKER_EXAMPLES))
def test_each_broker_example_prints_a_real_result_event(
    kind: str, tmp_path: Path, emulator: Emulator
) -> None:
    require_broker(kind)
    backend = BACKENDS[kind](tmp_path)
    name = f"results-{uuid.uuid4().hex[:10]}"
    example, url = BROKER_EXAMPLES[kind]
    try:
        with deployed(tmp_path, emulator, backend.url(name)) as deployment:
            job_id = deployment.detach()
            event = printed_event(run_example(example, url, name))
            assert (event["type"], event["data"]["job_id"]) == ("ecs-detach.succeeded", job_id)
            assert deployment.runtime.results.pending() == 0  # the example consumed it
    finally:
        backend.cleanup(name, [])


def test_the_http_receiver_prints_a_pushed_result_event(tmp_path: Path, emulator: Emulator) -> None:
    receiver = run_example("http_receiver.py", "--port", "0")
    assert receiver.stdout is not None
    listening = receiver.stdout.readline()
    assert listening.startswith("listening on http://127.0.0.1:"), listening
    with deployed(tmp_path, emulator, listening.split()[-1]) as deployment:
        job_id = deployment.detach()
        event = printed_event(receiver)
    assert (event["type"], event["data"]["job_id"]) == ("ecs-detach.succeeded", job_id)

"""Real flows leave their whole trail in the history: a webhook over loopback, the worker, the
result; a queued request, a duplicate, a refusal. The recorder sees every step whatever the log
level, and a history that is down never fails or holds up a detach: what it loses is counted
and reported."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from handler.entry.runtime import Runtime, build_runtime
from handler.history import Query, Trail, open_history
from handler.history.recorder import HistoryRecorder
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from handler.support.log import add_recorder, log_event, remove_recorder
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.flow.test_flow import next_result
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB1_SYSTEM
from tests.topics.brokers import proxy_to

ALERT = Path(__file__).resolve().parents[2] / "events" / "alertmanager-firing.json"


class Records(logging.Handler):
    """The ``ecs_detach`` log records, whatever the logger's configuration."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [getattr(r, "fields", {}) for r in self.seen if getattr(r, "event", None) == name]


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("ecs_detach")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def deployment(tmp_path: Path, emulator: Emulator, history_url: str) -> Iterator[Runtime]:
    runtime = build_runtime(fast_settings(tmp_path, emulator.url, history=history_url), DEMO_CREDENTIALS)
    worker = Worker(runtime.jobs, poll_job(runtime), concurrency=2, wait_s=0.1).start()
    yield runtime
    worker.stop()
    runtime.close()


@pytest.fixture
def webhook(deployment: Runtime) -> Iterator[str]:
    with BackgroundServer(runtime_app(deployment)) as server:
        yield server.url


def trails(runtime: Runtime, **query: Any) -> list[Trail]:
    assert runtime.history is not None
    assert runtime.history.flush(10.0)
    store = open_history(runtime.settings.history)
    try:
        return store.query(Query(**query))
    finally:
        store.close()


def events(trail: Trail) -> list[str]:
    return [step.event for step in trail.steps]


def test_an_alert_leaves_its_whole_trail(deployment: Runtime, webhook: str) -> None:
    answer = httpx.post(
        f"{webhook}/alertmanager",
        content=ALERT.read_bytes(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_ids"][0]
    assert next_result(deployment).data.outcome.value == "succeeded"

    (trail,) = trails(deployment)
    assert trail.outcome == "succeeded"
    assert trail.origin["source"] == "alertmanager"
    assert trail.origin["fingerprint"] == "b5f5c8e7a1d3f2c4"
    assert (trail.server_id, trail.job_id) == (WEB1, job_id)
    assert trail.key is not None
    assert trail.key.startswith("alertmanager:")
    steps = events(trail)
    assert steps[:3] == ["detach.requested", "detach.resolved", "detach.accepted"]
    assert "poll.status" in steps
    assert steps[-1] == "detach.result"
    accepted = trail.steps[2].fields
    assert accepted["volume_id"] == WEB1_DATA
    assert accepted["request_id"]  # the cloud's request id of the detach call
    result = trail.steps[-1].fields
    assert result["polls"] >= 1
    assert result["duration_s"] > 0
    assert trail.finished_at is not None
    assert trail.finished_at >= trail.started_at

    again = httpx.post(
        f"{webhook}/alertmanager",
        content=ALERT.read_bytes(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert again.status_code == 202
    newest, first = trails(deployment)
    assert events(newest) == ["detach.requested", "detach.duplicate"]
    assert newest.outcome == "duplicate"
    assert newest.steps[-1].fields["job_id"] == job_id
    assert first.id == trail.id
    assert first.outcome == "succeeded"  # the duplicate changed nothing of the original's trail


def test_a_queued_request_keeps_one_trail_through_its_turns(deployment: Runtime, emulator: Emulator) -> None:
    emulator.admin("PATCH", f"volumes/{WEB1_DATA}", {"job_duration_s": 1.0})
    first = deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
    second = deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_LOGS}))
    assert (first.status.value, second.status.value) == ("accepted", "queued")
    outcomes = {next_result(deployment).data.outcome.value for _ in range(2)}
    assert outcomes == {"succeeded"}

    queued, accepted = trails(deployment)
    assert queued.volume_id == WEB1_LOGS
    steps = events(queued)
    assert steps[:2] == ["detach.requested", "detach.queued"]
    assert "detach.accepted" in steps
    assert steps[-1] == "detach.result"
    assert queued.outcome == "succeeded"
    assert accepted.outcome == "succeeded"
    assert accepted.job_id != queued.job_id


def test_a_refusal_is_recorded_with_the_policy_verdict(deployment: Runtime) -> None:
    outcome = deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_SYSTEM}))
    assert outcome.status.value == "rejected"

    (trail,) = trails(deployment, outcome="rejected")
    assert events(trail) == ["detach.requested", "detach.refused_by_policy", "detach.result"]
    assert trail.steps[1].fields["code"] == trail.steps[2].fields["error_code"]
    assert trails(deployment, outcome="succeeded") == []


def test_steps_are_recorded_whatever_the_log_level(deployment: Runtime) -> None:
    logger = logging.getLogger("ecs_detach")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_SYSTEM}))
    finally:
        logger.setLevel(level)
    (trail,) = trails(deployment)
    assert trail.outcome == "rejected"


def test_a_failing_recorder_fails_no_step(records: Records) -> None:
    def broken(event: str, fields: Any) -> None:
        raise RuntimeError("disk on fire")

    add_recorder(broken)
    try:
        log_event("detach.requested", server_id=WEB1)
    finally:
        remove_recorder(broken)
    assert records.events("detach.requested") == [{"server_id": WEB1}]
    assert records.events("log.recorder_failed") == [{"error": "RuntimeError"}]


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


def test_a_history_that_is_down_holds_up_no_detach_and_reports_what_it_lost(
    tmp_path: Path, emulator: Emulator, records: Records
) -> None:
    down = f"postgresql://127.0.0.1:{closed_port()}/history"
    settings = fast_settings(tmp_path, emulator.url, history=down, history_wait_s=1.0)
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    try:
        start = time.monotonic()
        outcome = runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
        took = time.monotonic() - start
        assert outcome.status.value == "accepted"
        assert took < 1.0  # at most the first step waits, and only until the write fails
        assert runtime.history is not None
        assert runtime.history.stats()["healthy"] is False
    finally:
        runtime.close()
    (unavailable,) = records.events("history.unavailable")
    assert "127.0.0.1" in unavailable["error"]
    lost = sum(report["steps"] for report in records.events("history.lost"))
    assert lost == 2  # detach.requested and detach.accepted: every step, counted
    assert records.events("detach.accepted")  # the detach went on


def test_a_lost_connection_is_reopened_and_nothing_is_lost(postgres_url: str) -> None:
    from tests.history.conftest import POSTGRES

    port = int(POSTGRES.rsplit(":", 1)[1].split("/")[0])
    with proxy_to(port) as proxy:
        url = postgres_url.replace(f":{port}/", f":{proxy.port}/")
        opener = lambda: open_history(url)  # noqa: E731
        recorder = HistoryRecorder(opener, retention_s=86400.0)
        try:
            recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "k"})
            assert recorder.flush(10.0)
            proxy.cut()  # the database connection dies (RST)
            recorder("detach.result", {"server_id": WEB1, "idempotency_key": "k", "outcome": "rejected"})
            assert recorder.flush(15.0)
            assert recorder.stats()["lost"] == 0
        finally:
            recorder.close()
    store = open_history(postgres_url)
    try:
        (trail,) = store.query(Query())
        assert events(trail) == ["detach.requested", "detach.result"]
    finally:
        store.close()


def test_a_detach_waits_for_its_step_only_when_told(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/history.db"
    recorder = HistoryRecorder(lambda: open_history(url), retention_s=86400.0, wait_s=2.0)
    try:
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "k"})
        store = open_history(url)  # no flush: with wait_s, the step is written when the call returns
        try:
            assert store.count() == 1
        finally:
            store.close()
    finally:
        recorder.close()
    assert json.loads(json.dumps(recorder.stats()))["lost"] == 0


def test_status_shows_the_trail_after_the_store_forgot_the_request(
    deployment: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from handler.local.cli import main

    outcome = deployment.detach(
        parse_request({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "s-1"})
    )
    assert next_result(deployment).data.outcome.value == "succeeded"
    assert deployment.history is not None
    assert deployment.history.flush(10.0)
    monkeypatch.setenv("ECS_DETACH_HISTORY", deployment.settings.history)
    monkeypatch.setenv("ECS_DETACH_STORE", f"sqlite:///{tmp_path}/another-store.db")  # knows nothing

    assert main(["status", "s-1", "--no-cloud"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the store has forgotten it")
    assert "succeeded" in out.splitlines()[1]
    assert any("detach.result" in line for line in out.splitlines())

    assert main(["status", str(outcome.job_id), "--no-cloud", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "unknown"
    assert shown["history"]["job_id"] == outcome.job_id
    assert shown["history"]["outcome"] == "succeeded"

    monkeypatch.setenv("ECS_DETACH_HISTORY", "off")
    assert main(["status", "s-1", "--no-cloud"]) == 1
    capsys.readouterr()

    monkeypatch.setenv("ECS_DETACH_HISTORY", f"postgresql://ops:pw-1a2b@127.0.0.1:{closed_port()}/history")
    assert main(["status", "s-1", "--no-cloud"]) == 1  # the store's answer stands: unknown
    out = capsys.readouterr().out
    assert "history   unavailable: cannot open the history postgresql://***@127.0.0.1:" in out
    assert "pw-1a2b" not in out


def test_steps_from_another_process_join_the_request_they_belong_to(
    tmp_path: Path, emulator: Emulator, history_url: str
) -> None:
    """As on FunctionGraph: one process takes the request, another (here `ecs-detach worker`)
    polls its job; both write to the one history, and the polls join the request's trail."""
    settings = fast_settings(tmp_path, emulator.url, history=history_url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ECS_DETACH_", "HUAWEICLOUD_SDK_"))},
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "ECS_DETACH_ECS_ENDPOINT": emulator.url,
        "ECS_DETACH_STORE": settings.store,
        "ECS_DETACH_HISTORY": history_url,
        "ECS_DETACH_FIRST_POLL_S": "0.1",
        "ECS_DETACH_MIN_POLL_DELAY_S": "0.1",
        "ECS_DETACH_MAX_POLL_DELAY_S": "0.3",
        "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIALS.access_key,
        "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIALS.secret_key.get_secret_value(),
        "HUAWEICLOUD_SDK_PROJECT_ID": PID,
    }
    runtime = build_runtime(settings, DEMO_CREDENTIALS)  # takes requests; polls nothing
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handler.local.cli",
            "worker",
            "--health-port",
            "0",
            "--jobs",
            settings.jobs_topic,
            "--results",
            settings.results_topic,
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        outcome = runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
        assert outcome.status.value == "accepted"
        assert next_result(runtime, timeout=30).data.outcome.value == "succeeded"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
        runtime.close()
    assert worker.returncode == 0, errors

    store = open_history(history_url)
    try:
        (trail,) = store.query(Query())
    finally:
        store.close()
    assert events(trail)[:2] == ["detach.requested", "detach.accepted"]
    assert "poll.status" in events(trail)
    assert events(trail)[-1] == "detach.result"
    assert trail.outcome == "succeeded"
    assert trail.job_id == outcome.job_id


def test_the_writer_prunes_past_the_retention_a_bounded_batch_at_a_time(
    history_url: str, records: Records
) -> None:
    from datetime import timedelta

    from tests.history.test_contract import T0, a_request

    store = open_history(history_url)
    try:
        for number in range(4):  # 16 steps, all 500 days before "now"
            store.append(a_request(f"old{number}", f"k{number}", WEB1, number, job=f"{number:032x}"))
    finally:
        store.close()
    now = T0 + timedelta(days=500)
    recorder = HistoryRecorder(
        lambda: open_history(history_url),
        retention_s=400 * 86400.0,
        clock=lambda: now,
        prune_every_s=0.05,
        prune_batch=3,
        prune_batches=2,
    )
    try:
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "young"})
        assert recorder.flush(10.0)
        deadline = time.monotonic() + 10
        while (
            sum(p["removed"] for p in records.events("history.pruned")) < 16 and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    finally:
        recorder.close()
    passes = [p["removed"] for p in records.events("history.pruned")]
    assert sum(passes) == 16
    assert max(passes) <= 6  # each pass: at most 2 batches of 3
    store = open_history(history_url)
    try:
        (young,) = store.query(Query())
        assert young.key == "young"
    finally:
        store.close()


@contextlib.contextmanager
def table_locked(url: str) -> Iterator[None]:
    """Another client holds the history's table (a long migration, a backup): writes wait."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE ecs_detach_history IN ACCESS EXCLUSIVE MODE")
        yield
        pg.rollback()


def test_a_slow_history_holds_up_one_step_at_most(history_url: str) -> None:
    """A history that answers, slowly: one step waits its ``wait_s``; the next ones do not
    wait until the writer has caught up, and nothing is lost."""
    recorder = HistoryRecorder(lambda: open_history(history_url), retention_s=86400.0, wait_s=0.3)
    try:
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "first"})  # the table exists
        took = []
        with table_locked(history_url):
            for number in range(5):
                start = time.monotonic()
                recorder("detach.requested", {"server_id": WEB1, "idempotency_key": f"k{number}"})
                took.append(time.monotonic() - start)
            time.sleep(0.5)
        assert took[0] == pytest.approx(0.3, abs=0.2)
        assert sum(took[1:]) < 0.1
        assert recorder.flush(15.0)
        assert recorder.stats()["lost"] == 0
    finally:
        recorder.close()
    store = open_history(history_url)
    try:
        assert store.count() == 6
    finally:
        store.close()


def test_runtimes_sharing_a_history_write_each_step_once_and_stop_at_close(
    tmp_path: Path, emulator: Emulator, history_url: str
) -> None:
    one = build_runtime(fast_settings(tmp_path / "one", emulator.url, history=history_url), DEMO_CREDENTIALS)
    two = build_runtime(fast_settings(tmp_path / "two", emulator.url, history=history_url), DEMO_CREDENTIALS)
    try:
        assert one.history is two.history  # one recorder per history in a process
        one.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_SYSTEM}))
    finally:
        one.close()
    assert two.history is not None
    assert two.history.flush(10.0)  # still recording for the runtime left
    two.close()
    log_event("detach.requested", server_id=WEB1)  # no runtime: no recorder

    store = open_history(history_url)
    try:
        (trail,) = store.query(Query())
        assert events(trail) == ["detach.requested", "detach.refused_by_policy", "detach.result"]
        assert store.count() == 3
    finally:
        store.close()


def test_a_history_url_that_cannot_work_stops_the_runtime_before_anything_opens(
    tmp_path: Path, emulator: Emulator
) -> None:
    from handler.errors import ConfigError

    with pytest.raises(ConfigError, match="ECS_DETACH_HISTORY mysql://db/history has scheme 'mysql'"):
        build_runtime(fast_settings(tmp_path, emulator.url, history="mysql://db/history"), DEMO_CREDENTIALS)
    assert not (tmp_path / "store.db").exists()


def refuse_poison(url: str) -> None:
    """The database itself refuses one kind of step (as a constraint added by a DBA would)."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            conn.execute(
                "CREATE TRIGGER no_poison BEFORE INSERT ON ecs_detach_history "
                "WHEN NEW.event = 'detach.poison' BEGIN SELECT RAISE(ABORT, 'poison'); END"
            )
            conn.commit()
        return
    with psycopg.connect(url) as pg:
        pg.execute("ALTER TABLE ecs_detach_history ADD CONSTRAINT no_poison CHECK (event <> 'detach.poison')")


def test_a_step_the_database_refuses_is_dropped_alone(history_url: str, records: Records) -> None:
    open_history(history_url).close()  # the table
    refuse_poison(history_url)
    recorder = HistoryRecorder(lambda: open_history(history_url), retention_s=86400.0)
    try:
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "k"})
        recorder("detach.poison", {"server_id": WEB1, "idempotency_key": "k"})
        recorder("detach.result", {"server_id": WEB1, "idempotency_key": "k", "outcome": "rejected"})
        assert recorder.flush(10.0)
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "later"})
        assert recorder.flush(10.0)
        assert recorder.stats()["lost"] == 1
        assert recorder.stats()["healthy"] is True
    finally:
        recorder.close()
    (refused,) = records.events("history.refused")
    assert refused["step"] == "detach.poison"
    assert records.events("history.unavailable") == []
    store = open_history(history_url)
    try:
        later, first = store.query(Query())
        assert events(first) == ["detach.requested", "detach.result"]
        assert later.key == "later"
    finally:
        store.close()


class _CountedHistory:
    """The real SQLite history, counting its commits (``append`` calls)."""

    def __init__(self, url: str) -> None:
        self.store = open_history(url)
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def append(self, steps: Any) -> None:
        self.store.append(steps)
        self.batches.append(len(steps))


def test_steps_that_come_together_are_written_in_one_commit(tmp_path: Path) -> None:
    counted = _CountedHistory(f"sqlite:///{tmp_path}/history.db")
    recorder = HistoryRecorder(lambda: counted, retention_s=86400.0)  # type: ignore[arg-type, return-value]
    try:
        for index in range(5):
            recorder("detach.requested", {"server_id": WEB1, "idempotency_key": f"k{index}"})
            time.sleep(0.005)  # a few ms apart, like the steps of requests in a row
        assert recorder.flush(5.0)
        assert counted.batches == [5]
        for index in range(1000):  # a burst: whole batches back to back (5 held 0.1 s each: 0.5 s)
            recorder("detach.requested", {"server_id": WEB1, "idempotency_key": f"b{index}"})
        started = time.monotonic()
        assert recorder.flush(5.0)
        assert time.monotonic() - started < 0.4
        assert sum(counted.batches) == 1005
        assert counted.count() == 1005
    finally:
        recorder.close()


def test_a_full_buffer_drops_the_step_that_finds_it_full_and_counts_it(tmp_path: Path) -> None:
    """The database hangs: the buffer fills to its capacity, each further step is dropped at once
    (the detach never waits for it) and counted; when the database answers again, the buffered
    steps are written and nothing else is lost."""
    counted = _CountedHistory(f"sqlite:///{tmp_path}/history.db")
    writing, answering = threading.Event(), threading.Event()
    append = counted.append

    def hanging_append(steps: Any) -> None:
        writing.set()
        answering.wait(10)
        append(steps)

    counted.append = hanging_append  # type: ignore[method-assign]
    recorder = HistoryRecorder(lambda: counted, retention_s=86400.0, capacity=3)  # type: ignore[arg-type, return-value]
    try:
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": "k0"})
        assert writing.wait(5)  # the writer holds k0, stuck in the database
        for index in range(1, 6):  # 3 fit in the buffer, 2 find it full
            started = time.monotonic()
            recorder("detach.requested", {"server_id": WEB1, "idempotency_key": f"k{index}"})
            assert time.monotonic() - started < 0.5
        assert recorder.stats()["lost"] == 2
        answering.set()
        assert recorder.flush(5.0)
        assert recorder.stats()["lost"] == 2
        assert sorted(trail.key for trail in counted.query(Query())) == ["k0", "k1", "k2", "k3"]
    finally:
        answering.set()
        recorder.close()


def test_closing_writes_what_is_buffered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/history.db"
    recorder = HistoryRecorder(lambda: open_history(url), retention_s=86400.0)
    for index in range(50):
        recorder("detach.requested", {"server_id": WEB1, "idempotency_key": f"k{index}"})
    recorder.close()
    assert recorder.stats()["lost"] == 0
    store = open_history(url)
    try:
        assert store.count() == 50
    finally:
        store.close()

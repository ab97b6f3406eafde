"""SqliteTopic and open_topic against real files: leases, dead letters, threads, processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from handler.topics import (
    Delivery,
    SqliteTopic,
    StaleDelivery,
    TopicError,
    open_topic,
)
from handler.topics import sqlite as sqlite_module
from tests.support import FakeClock

BODY = json.dumps({"specversion": "1.0", "data": {"volume": "vol-ü", "note": "a\nb\x00c"}})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "topics.db"


@pytest.fixture
def make(db: Path, clock: FakeClock) -> Iterator[Callable[..., SqliteTopic]]:
    """Open topics on ``db`` (fake clock unless given one) and close them all at the end."""
    opened: list[SqliteTopic] = []

    def make(name: str = "jobs", **kwargs: Any) -> SqliteTopic:
        kwargs.setdefault("clock", clock)
        topic = SqliteTopic(kwargs.pop("path", db), name, **kwargs)
        opened.append(topic)
        return topic

    yield make
    for topic in opened:
        topic.close()


def row(db: Path, message_id: str) -> tuple[Any, ...]:
    with sqlite3.connect(db) as conn:
        result = conn.execute(
            "SELECT topic, body, deliveries, last_error FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
    conn.close()
    assert result is not None
    return tuple(result)


def only(deliveries: list[Delivery]) -> Delivery:
    assert len(deliveries) == 1, deliveries
    return deliveries[0]


# --- basics ---------------------------------------------------------------------------------


def test_round_trip(make: Callable[..., SqliteTopic]) -> None:
    topic = make()
    message_id = topic.publish(BODY)
    assert topic.pending() == 1

    delivery = only(topic.receive())
    assert delivery.message_id == message_id
    assert delivery.body == BODY
    assert delivery.deliveries == 1
    assert delivery.receipt
    assert topic.pending() == 1  # leased, not gone

    topic.ack(delivery)
    assert topic.pending() == 0
    assert topic.receive() == []
    with pytest.raises(StaleDelivery):
        topic.ack(delivery)


def test_messages_come_out_in_publish_order(make: Callable[..., SqliteTopic]) -> None:
    topic = make()
    bodies = [f"m{i}" for i in range(7)]
    ids = [topic.publish(body) for body in bodies]
    assert len(set(ids)) == 7

    first = topic.receive(max_messages=3)
    rest = topic.receive(max_messages=10)
    assert [d.body for d in first + rest] == bodies
    assert [d.message_id for d in first + rest] == ids
    assert len({d.receipt for d in first + rest}) == 7


def test_topics_in_one_file_are_separate(make: Callable[..., SqliteTopic]) -> None:
    jobs, results = make("jobs"), make("results")
    jobs.publish("job")
    results.publish("result")
    assert (jobs.pending(), results.pending()) == (1, 1)

    job = only(jobs.receive(max_messages=5))
    assert job.body == "job"
    with pytest.raises(StaleDelivery):
        results.ack(job)  # a delivery only settles in its own topic
    assert only(results.receive(max_messages=5)).body == "result"


def test_delayed_publish_is_invisible_until_due(make: Callable[..., SqliteTopic], clock: FakeClock) -> None:
    topic = make()
    topic.publish("late", delay=30)
    topic.publish("now")
    assert only(topic.receive(max_messages=5)).body == "now"

    clock.advance(29.9)
    assert topic.receive() == []
    clock.advance(0.1)
    assert only(topic.receive()).body == "late"


# --- leases ---------------------------------------------------------------------------------


def test_unacked_message_comes_back_after_visibility_timeout(
    make: Callable[..., SqliteTopic], clock: FakeClock
) -> None:
    topic = make(visibility_timeout=10)
    other = make()  # another consumer on the same file and topic
    topic.publish(BODY)
    first = only(topic.receive())

    clock.advance(9.9)
    assert other.receive() == []  # still leased
    clock.advance(0.1)
    second = only(other.receive())
    assert second.message_id == first.message_id
    assert second.body == BODY
    assert second.deliveries == 2
    assert second.receipt != first.receipt

    with pytest.raises(StaleDelivery):
        topic.ack(first)
    with pytest.raises(StaleDelivery):
        topic.nack(first, reason="late")
    with pytest.raises(StaleDelivery):
        topic.requeue(first, "replaced", delay=0)
    other.ack(second)
    assert topic.pending() == 0


def test_expired_lease_is_stale_even_before_anyone_else_receives(
    make: Callable[..., SqliteTopic], clock: FakeClock
) -> None:
    topic = make(visibility_timeout=5)
    topic.publish("x")
    delivery = only(topic.receive())
    clock.advance(5)
    with pytest.raises(StaleDelivery):
        topic.ack(delivery)
    assert topic.pending() == 1


def test_nack_makes_message_due_after_delay_and_keeps_count(
    make: Callable[..., SqliteTopic], clock: FakeClock, db: Path
) -> None:
    topic = make()
    topic.publish("x")
    first = only(topic.receive())
    topic.nack(first, delay=10, reason="cloud said 503")
    assert row(db, first.message_id) == ("jobs", "x", 1, "cloud said 503")
    with pytest.raises(StaleDelivery):
        topic.ack(first)  # the nack ended the lease

    clock.advance(9.9)
    assert topic.receive() == []
    clock.advance(0.1)
    second = only(topic.receive())
    assert (second.message_id, second.deliveries) == (first.message_id, 2)

    topic.nack(second)  # no delay: due at once
    assert only(topic.receive()).deliveries == 3


def test_requeue_replaces_body_and_restarts_count(
    make: Callable[..., SqliteTopic], clock: FakeClock, db: Path
) -> None:
    topic = make(max_deliveries=2)
    topic.publish("step 1")
    topic.nack(only(topic.receive()), reason="transient")
    second = only(topic.receive())
    assert second.deliveries == 2

    topic.requeue(second, "step 2", delay=5)
    assert row(db, second.message_id) == ("jobs", "step 2", 0, None)
    with pytest.raises(StaleDelivery):
        topic.requeue(second, "step 3", delay=0)
    clock.advance(4.9)
    assert topic.receive() == []
    clock.advance(0.1)
    third = only(topic.receive())
    assert (third.message_id, third.body, third.deliveries) == (second.message_id, "step 2", 1)
    # The count restarted: one more failure is allowed before the dead-letter topic.
    topic.nack(third)
    assert only(topic.receive()).deliveries == 2


# --- dead letters ---------------------------------------------------------------------------


def test_dead_letter_after_max_deliveries_keeps_body_count_and_reason(
    make: Callable[..., SqliteTopic], db: Path
) -> None:
    topic = make(max_deliveries=3)
    message_id = topic.publish(BODY)
    topic.publish("healthy")
    for attempt in (1, 2, 3):
        delivery = only(topic.receive())
        assert (delivery.body, delivery.deliveries) == (BODY, attempt)
        topic.nack(delivery, reason=f"attempt {attempt} failed")
    assert topic.pending() == 2  # exhausted, but nobody received since

    # The exhausted message is not delivered: it moves, and the next one comes instead.
    assert only(topic.receive(max_messages=5)).body == "healthy"
    assert topic.pending() == 1
    assert row(db, message_id) == ("jobs.dead", BODY, 3, "attempt 3 failed")

    dead = topic.dead_letter_topic()
    assert dead.name == "jobs.dead"
    assert dead.pending() == 1
    dead_delivery = only(dead.receive())
    assert dead_delivery.message_id == message_id
    assert dead_delivery.body == BODY
    assert dead_delivery.deliveries == 4
    dead.ack(dead_delivery)
    assert dead.pending() == 0


def test_lease_expiry_counts_towards_dead_letter(
    make: Callable[..., SqliteTopic], clock: FakeClock, db: Path
) -> None:
    topic = make(max_deliveries=1, visibility_timeout=10)
    message_id = topic.publish("x")
    only(topic.receive())
    clock.advance(10)
    assert topic.receive() == []
    assert topic.pending() == 0
    assert row(db, message_id) == ("jobs.dead", "x", 1, None)


def test_dead_letter_now_moves_an_unprocessable_message_at_once(
    make: Callable[..., SqliteTopic], db: Path
) -> None:
    topic = make(max_deliveries=5)
    message_id = topic.publish("not an event")
    delivery = only(topic.receive())
    topic.dead_letter(delivery, reason="invalid event: data.job_id missing")
    assert topic.pending() == 0
    assert row(db, message_id) == ("jobs.dead", "not an event", 1, "invalid event: data.job_id missing")
    with pytest.raises(StaleDelivery):
        topic.ack(delivery)
    dead = make("jobs.dead")
    with pytest.raises(TopicError, match="dead-letter topic"):
        dead.dead_letter(only(dead.receive()), reason="again")


def test_dead_letter_topic_keeps_messages_however_often_delivered(
    make: Callable[..., SqliteTopic],
) -> None:
    topic = make(max_deliveries=1)
    topic.publish("x")
    topic.nack(only(topic.receive()))
    assert topic.receive() == []

    dead = make("jobs.dead", max_deliveries=1)
    for expected in range(2, 6):
        delivery = only(dead.receive())
        assert delivery.deliveries == expected
        dead.nack(delivery)
    assert dead.pending() == 1
    with pytest.raises(ValueError, match="dead-letter topic"):
        dead.dead_letter_topic()


# --- file, schema, arguments ----------------------------------------------------------------


def test_creates_directory_and_versioned_wal_schema(make: Callable[..., SqliteTopic], db: Path) -> None:
    assert not db.parent.exists()
    make().publish("x")
    assert db.is_file()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (sqlite_module.SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    assert make().pending() == 1  # reopening keeps the data


def test_refuses_a_newer_schema_and_non_databases(
    make: Callable[..., SqliteTopic], db: Path, tmp_path: Path
) -> None:
    make().close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {sqlite_module.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(TopicError, match=f"schema version {sqlite_module.SCHEMA_VERSION + 1}"):
        make()

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TopicError, match=r"junk\.db"):
        make(path=junk)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"visibility_timeout": 0}, "visibility_timeout"),
        ({"visibility_timeout": -1.0}, "visibility_timeout"),
        ({"visibility_timeout": float("inf")}, "visibility_timeout"),
        ({"visibility_timeout": float("nan")}, "visibility_timeout"),
    ],
)
def test_constructor_validates(
    make: Callable[..., SqliteTopic], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_methods_validate_and_closed_topic_raises(make: Callable[..., SqliteTopic]) -> None:
    topic = make()
    with pytest.raises(ValueError, match="delay"):
        topic.publish("x", delay=-1)
    with pytest.raises(ValueError, match="max_messages"):
        topic.receive(max_messages=0)
    with pytest.raises(ValueError, match="wait"):
        topic.receive(wait=-1)
    topic.publish("x")
    delivery = only(topic.receive())
    with pytest.raises(ValueError, match="delay"):
        topic.nack(delivery, delay=float("nan"))
    topic.close()
    topic.close()
    with pytest.raises(TopicError, match="closed"):
        topic.publish("y")


# --- waiting --------------------------------------------------------------------------------


@pytest.fixture
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an in-process wake-up or a due time can end a wait early."""
    monkeypatch.setattr(sqlite_module, "_POLL_INTERVAL", 30.0)


@pytest.mark.usefixtures("no_polling")
def test_receive_wakes_when_another_thread_publishes(make: Callable[..., SqliteTopic]) -> None:
    receiver, publisher = make(clock=time.time), make(clock=time.time)
    timer = threading.Timer(0.2, publisher.publish, args=("hello",))
    start = time.monotonic()
    timer.start()
    try:
        delivery = only(receiver.receive(wait=3))
    finally:
        timer.join()
    assert delivery.body == "hello"
    assert 0.15 < time.monotonic() - start < 2


@pytest.mark.usefixtures("no_polling")
def test_receive_sleeps_only_until_the_next_delayed_message(
    make: Callable[..., SqliteTopic],
) -> None:
    topic = make(clock=time.time)
    topic.publish("soon", delay=0.3)
    start = time.monotonic()
    assert only(topic.receive(wait=3)).body == "soon"
    assert 0.25 < time.monotonic() - start < 2


def test_receive_gives_up_after_wait(make: Callable[..., SqliteTopic]) -> None:
    topic = make(clock=time.time)
    start = time.monotonic()
    assert topic.receive(wait=0.2) == []
    assert 0.2 <= time.monotonic() - start < 1.5


# --- concurrency ----------------------------------------------------------------------------


def _drain(topic: SqliteTopic, batch: int) -> list[str]:
    """Receive and ack until the topic is empty; return the acked bodies."""
    done: list[str] = []
    while True:
        deliveries = topic.receive(max_messages=batch, wait=0.05)
        if not deliveries and topic.pending() == 0:
            return done
        for delivery in deliveries:
            time.sleep(0.001)  # "work", so that the other consumers get their turns
            topic.ack(delivery)  # StaleDelivery here would mean a shared lease
            done.append(delivery.body)


def test_threads_on_one_file_each_get_every_message_once(
    make: Callable[..., SqliteTopic],
) -> None:
    make(clock=time.time).close()  # schema exists before the race below
    bodies = [f"m{i}" for i in range(500)]
    publisher = make(clock=time.time)
    for body in bodies:
        publisher.publish(body)

    consumers = [make(clock=time.time) for _ in range(4)]
    start = threading.Barrier(len(consumers))

    def consume(topic: SqliteTopic, batch: int) -> list[str]:
        start.wait(timeout=10)
        return _drain(topic, batch)

    with ThreadPoolExecutor(len(consumers)) as pool:
        results = list(pool.map(consume, consumers, [1, 2, 3, 5]))

    assert Counter(body for done in results for body in done) == Counter(bodies)
    assert sum(1 for done in results if done) >= 2, "the consumers should have overlapped"
    assert publisher.pending() == 0


def _publish_then_drain(path: str, worker: int, count: int, barrier: Any, out: str) -> None:
    topic = SqliteTopic(path, "jobs")
    for i in range(count):
        topic.publish(f"{worker}-{i}")
    barrier.wait(timeout=30)
    Path(out).write_text(json.dumps(_drain(topic, batch=1 + worker)))
    topic.close()


@pytest.mark.slow
def test_processes_on_one_fresh_file_process_every_message_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    path, workers, per_worker = tmp_path / "new" / "topics.db", 3, 100
    barrier = ctx.Barrier(workers)
    outs = [tmp_path / f"done-{worker}.json" for worker in range(workers)]
    processes = [
        ctx.Process(
            target=_publish_then_drain,
            args=(str(path), worker, per_worker, barrier, str(outs[worker])),
        )
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * workers

    done = Counter(body for out in outs for body in json.loads(out.read_text()))
    expected = {f"{worker}-{i}" for worker in range(workers) for i in range(per_worker)}
    assert set(done) == expected
    assert set(done.values()) == {1}
    topic = SqliteTopic(path, "jobs")
    try:
        assert topic.pending() == 0
    finally:
        topic.close()


def _receive_and_hang(path: str, visibility_timeout: float, received: Any) -> None:
    topic = SqliteTopic(path, "jobs", visibility_timeout=visibility_timeout)
    received.put(only(topic.receive(wait=10)).message_id)
    time.sleep(60)  # killed here, lease in hand


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_message_of_killed_consumer_is_redelivered_after_visibility_timeout(
    make: Callable[..., SqliteTopic], db: Path
) -> None:
    visibility_timeout = 1.5
    topic = make(clock=time.time, visibility_timeout=visibility_timeout)
    message_id = topic.publish(BODY)

    ctx = multiprocessing.get_context("spawn")
    received = ctx.Queue()
    consumer = ctx.Process(target=_receive_and_hang, args=(str(db), visibility_timeout, received))
    started = time.time()
    consumer.start()
    try:
        assert received.get(timeout=30) == message_id
    finally:
        assert consumer.pid is not None
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.join(timeout=10)
    assert consumer.exitcode == -signal.SIGKILL

    # The consumer received after `started`, so its lease lasts at least until this:
    if time.time() < started + visibility_timeout - 0.1:
        assert topic.receive() == []
    redelivered = only(topic.receive(wait=10))
    assert time.time() >= started + visibility_timeout
    assert (redelivered.message_id, redelivered.body) == (message_id, BODY)
    assert redelivered.deliveries == 2
    topic.ack(redelivered)
    assert topic.pending() == 0
    assert topic.receive() == []
    dead = topic.dead_letter_topic()
    try:
        assert dead.pending() == 0
    finally:
        dead.close()


# --- open_topic -----------------------------------------------------------------------------


def test_open_topic_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    topic = open_topic("sqlite:///.ecs-detach/topics.db", default_name="jobs")
    try:
        assert isinstance(topic, SqliteTopic)
        assert topic.name == "jobs"
        assert topic.path == tmp_path.resolve() / ".ecs-detach" / "topics.db"
        assert topic.path.is_file()
    finally:
        topic.close()


def test_open_topic_absolute_path_topic_query_and_options(
    tmp_path: Path, make: Callable[..., SqliteTopic]
) -> None:
    path = tmp_path / "my dir" / "t.db"
    url = f"sqlite:///{path.as_posix().replace(' ', '%20')}?topic=results"
    assert url.startswith("sqlite:////")
    topic = open_topic(url, default_name="jobs", max_deliveries=1, visibility_timeout=0.1)
    try:
        assert topic.name == "results"
        topic.publish("r")
        assert make("results", path=path).pending() == 1  # same file, same topic

        assert only(topic.receive()).deliveries == 1
        time.sleep(0.15)  # the 0.1 s lease ends; max_deliveries=1 sends it to the dead letters
        assert topic.receive() == []
        assert make("results.dead", path=path).pending() == 1
    finally:
        topic.close()

"""The history's contract, on SQLite and on a real PostgreSQL server: what is appended is found
again, by server, key, outcome and time, newest first; steps join their request's trail across
invocations; retention prunes in bounded batches; concurrent writers (threads, processes) lose
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from handler.errors import ConfigError
from handler.history import HistoryStore, Query, Step, check_url, open_history
from handler.history.models import status_of

T0 = datetime(2026, 1, 15, 8, 30, tzinfo=timezone.utc)
SERVER_A = "1b3c5e7f-0000-4000-8000-00000000aaaa"
SERVER_B = "1b3c5e7f-0000-4000-8000-00000000a002"
JOB = "ff80808288d41e1b018917ae93d3044c"
ROOT = Path(__file__).resolve().parents[2]


def step(
    event: str, seconds: float, *, trail: str | None = None, in_request: bool = True, **fields: Any
) -> Step:
    """A step as the recorder makes it: its status from ``models``, its trail when known."""
    status = status_of(event, fields, in_request=in_request)
    opens = event == "detach.requested"
    return Step(T0 + timedelta(seconds=seconds), event, fields, status, trail, opens=opens)


def a_request(trail: str, key: str, server: str, at: float, *, job: str | None = None) -> list[Step]:
    """A request accepted in one invocation (requested → accepted), then polled and finished
    in others (steps that name their trail by job only)."""
    steps = [
        step(
            "detach.requested",
            at,
            trail=trail,
            idempotency_key=key,
            server_id=server,
            origin={"source": "alertmanager", "fingerprint": "f1"},
        ),
    ]
    if job is not None:
        steps += [
            step(
                "detach.accepted",
                at + 0.2,
                trail=trail,
                idempotency_key=key,
                server_id=server,
                job_id=job,
                request_id="req-1",
            ),
            step("poll.status", at + 2.0, job_id=job, status="RUNNING", attempt=1, idempotency_key=key),
            step(
                "detach.result",
                at + 4.5,
                job_id=job,
                outcome="succeeded",
                polls=2,
                duration_s=4.3,
                idempotency_key=key,
            ),
        ]
    return steps


@pytest.fixture
def history(history_url: str) -> Any:
    store = open_history(history_url)
    yield store
    store.close()


def test_a_request_is_found_with_its_whole_trail(history: HistoryStore) -> None:
    history.append(a_request("t1", "k1", SERVER_A, 0, job=JOB))

    (trail,) = history.query(Query())
    assert [s.event for s in trail.steps] == [
        "detach.requested",
        "detach.accepted",
        "poll.status",
        "detach.result",
    ]
    assert trail.outcome == "succeeded"
    assert (trail.key, trail.server_id, trail.job_id) == ("k1", SERVER_A, JOB)
    assert trail.origin == {"source": "alertmanager", "fingerprint": "f1"}
    assert trail.steps[1].fields["request_id"] == "req-1"
    assert trail.finished_at == T0 + timedelta(seconds=4.5)
    assert trail.as_dict()["duration_s"] == 4.5


def test_queries_by_server_key_outcome_and_time_newest_first(history: HistoryStore) -> None:
    history.append(a_request("old", "k-old", SERVER_A, 0, job=JOB))
    history.append(a_request("mid", "k-mid", SERVER_B, 60))  # still in flight: requested
    history.append(
        [
            *a_request("new", "k-new", SERVER_A, 120),
            step("detach.refused_by_policy", 120.1, trail="new", server_id=SERVER_A, code="NotAllowed"),
            step("detach.result", 120.2, trail="new", outcome="rejected", error_code="NotAllowed"),
        ]
    )

    def ids(**query: Any) -> list[str]:
        return [trail.id for trail in history.query(Query(**query))]

    assert ids() == ["new", "mid", "old"]
    assert ids(server_id=SERVER_A) == ["new", "old"]
    assert ids(key="k-mid") == ["mid"]
    assert ids(outcome="rejected") == ["new"]
    assert ids(outcome="succeeded") == ["old"]
    assert ids(outcome="requested") == ["mid"]
    assert ids(since=T0 + timedelta(seconds=30)) == ["new", "mid"]
    assert ids(limit=1) == ["new"]
    assert ids(server_id=SERVER_B, outcome="succeeded") == []
    # pages, one trail, and a search in servers, keys and jobs (the console's table)
    assert ids(limit=2, offset=1) == ["mid", "old"]
    assert ids(offset=3) == []
    assert ids(trail="mid") == ["mid"]
    assert ids(text="a002") == ["mid"]  # part of SERVER_B
    assert ids(text="k-") == ["new", "mid", "old"]
    assert ids(text=JOB[:10]) == ["old"]  # found by a step of its job (the poll and the result)
    assert ids(text="old") == ["old"]  # its trail
    assert ids(text="%") == []  # LIKE's wildcards are searched as text
    assert ids(text="k_new") == []


def test_a_queued_request_takes_its_turn_in_its_own_trail(history: HistoryStore) -> None:
    """The turn (another invocation) names the request by its key: it joins the queued
    request, not a later duplicate of it that was answered from the record."""
    history.append(
        [
            step("detach.requested", 0, trail="q", idempotency_key="k", server_id=SERVER_A),
            step("detach.queued", 0.1, trail="q", idempotency_key="k", server_id=SERVER_A),
            step("detach.requested", 1, trail="dup", idempotency_key="k", server_id=SERVER_A),
            step("detach.duplicate", 1.1, trail="dup", idempotency_key="k", original="queued"),
            # the turn, in another invocation: no trail of its own
            step("detach.accepted", 5, in_request=False, idempotency_key="k", job_id=JOB, server_id=SERVER_A),
            step("detach.result", 9, in_request=False, idempotency_key="k", job_id=JOB, outcome="succeeded"),
        ]
    )
    trails = {trail.id: trail for trail in history.query(Query())}
    assert set(trails) == {"q", "dup"}
    assert [s.event for s in trails["q"].steps] == [
        "detach.requested",
        "detach.queued",
        "detach.accepted",
        "detach.result",
    ]
    assert trails["q"].outcome == "succeeded"
    assert trails["dup"].outcome == "duplicate"


def test_a_step_no_request_started_opens_a_trail_of_its_own(history: HistoryStore) -> None:
    history.append(a_request("t1", "k1", SERVER_A, 0, job=JOB))
    history.append([step("poll.status", 9, in_request=False, job_id="0" * 32, status="RUNNING")])

    trails = history.query(Query())
    assert len(trails) == 2
    assert trails[0].steps[0].fields["job_id"] == "0" * 32
    assert trails[1].outcome == "succeeded"  # untouched


def test_text_from_outside_is_kept_as_sent(history: HistoryStore) -> None:
    hostile = "web\n\x1b[31m'); DROP TABLE ecs_detach_history; --\u202e"
    history.append([step("detach.requested", 0, trail="t", idempotency_key=hostile, reason=hostile)])
    (trail,) = history.query(Query(key=hostile))
    assert trail.steps[0].fields["reason"] == hostile
    assert history.count() == 1


def test_retention_prunes_old_steps_in_bounded_batches(history: HistoryStore) -> None:
    for number in range(5):
        history.append(a_request(f"old{number}", f"k{number}", SERVER_A, number, job=f"{number:032x}"))
    history.append(a_request("young", "ky", SERVER_A, 3600, job=JOB))
    assert history.count() == 24

    cutoff = T0 + timedelta(seconds=1800)
    assert history.prune(cutoff, 7) == 7  # never more than asked
    assert history.count() == 17
    while history.prune(cutoff, 7):
        pass
    assert history.count() == 4
    assert [trail.id for trail in history.query(Query())] == ["young"]


def test_threads_writing_at_once_lose_nothing(history_url: str) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        store = open_history(history_url)
        try:
            for number in range(20):
                store.append(
                    a_request(
                        f"w{worker}-{number}",
                        f"k{worker}-{number}",
                        SERVER_A,
                        number,
                        job=f"{worker:016x}{number:016x}",
                    )
                )
        except BaseException as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = open_history(history_url)
    try:
        trails = store.query(Query(limit=1000))
        assert len(trails) == 80
        assert all(trail.outcome == "succeeded" and len(trail.steps) == 4 for trail in trails)
    finally:
        store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from tests.history.test_contract import SERVER_A, a_request
    from handler.history import open_history

    url, name = sys.argv[1], sys.argv[2]
    store = open_history(url)
    for number in range(25):
        store.append(a_request(f"{name}-{number}", f"{name}-{number}", SERVER_A, number,
                               job=f"{name}{number:030x}"))
    store.close()
    """
)


def test_two_processes_writing_at_once_lose_nothing(history_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, history_url, name], env=env, cwd=ROOT)
        for name in ("aa", "bb")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    store = open_history(history_url)
    try:
        trails = store.query(Query(limit=1000))
        assert sorted({trail.id[:2] for trail in trails}) == ["aa", "bb"]
        assert len(trails) == 50
        assert all(trail.outcome == "succeeded" for trail in trails)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://relative.db", "malformed sqlite URL"),
        ("mysql://db/history", "scheme 'mysql'"),
        ("history.db", "no scheme"),
    ],
)
def test_a_url_that_cannot_work_is_refused_by_name(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as refused:
        check_url(url)
    assert "ECS_DETACH_HISTORY" in str(refused.value)


def test_a_password_in_the_url_never_reaches_an_error() -> None:
    from handler.history import HistoryError

    with pytest.raises(HistoryError) as refused:
        open_history("postgresql://ops:s3cr3t-pw@127.0.0.1:1/history?connect_timeout=1")
    assert "s3cr3t-pw" not in str(refused.value)
    assert "***@127.0.0.1:1" in str(refused.value)


def test_text_no_database_can_hold_is_kept_readable(history: HistoryStore, history_url: str) -> None:
    """A lone surrogate (JSON can carry one) becomes U+FFFD; so does NUL on PostgreSQL, whose
    text and JSONB cannot hold it (SQLite keeps it). Nothing else of the step changes."""
    key = "fp-\ud800-1"
    history.append([step("detach.requested", 0, trail="t", idempotency_key=key, reason="a\x00b\udfffc")])

    (trail,) = history.query(Query(key="fp-\ufffd-1"))
    nul = "\x00" if history_url.startswith("sqlite") else "\ufffd"
    assert trail.steps[0].fields["reason"] == f"a{nul}b\ufffdc"
    assert trail.key == "fp-\ufffd-1"
    # searched for as sent, it is found as it was kept; a search for such text is no error
    assert [t.id for t in history.query(Query(key=key))] == [trail.id]
    assert [t.id for t in history.query(Query(text="p-\ud800"))] == [trail.id]
    assert history.query(Query(trail="\x00\ud800", text="\x00")) == []


def test_a_step_with_only_a_nul_or_look_alike_text_is_kept_as_the_database_can(
    history: HistoryStore, history_url: str
) -> None:
    """The fields are cleaned only when their JSON text holds what ``clean`` replaces: a NUL
    alone (in a nested value) still becomes U+FFFD on PostgreSQL; a pair of surrogates (an emoji)
    and text that only looks like an escape are kept as sent."""
    looks_escaped = "\\ud800 and \\u0000"
    history.append(
        [
            step("detach.requested", 0, trail="t1", idempotency_key="k1", origin={"ticket": "a\x00b"}),
            step("detach.requested", 1, trail="t2", idempotency_key="k2", reason=looks_escaped),
            step("detach.requested", 2, trail="t3", idempotency_key="k3", reason="\U0001f600"),
        ]
    )

    nul = "\x00" if history_url.startswith("sqlite") else "\ufffd"
    assert history.query(Query(key="k1"))[0].steps[0].fields["origin"] == {"ticket": f"a{nul}b"}
    assert history.query(Query(key="k2"))[0].steps[0].fields["reason"] == looks_escaped
    assert history.query(Query(key="k3"))[0].steps[0].fields["reason"] == "\U0001f600"


def test_a_trail_opens_once(history: HistoryStore) -> None:
    from handler.history import HistoryRefused

    history.append(a_request("t", "k", SERVER_A, 0))
    with pytest.raises(HistoryRefused, match="refused a step"):
        history.append(a_request("t", "k", SERVER_A, 5))
    assert history.count() == 1  # the refused transaction left nothing

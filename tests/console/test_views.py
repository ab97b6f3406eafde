"""What the console's pages compute from the history, on trails made here: the plots' buckets
and the time from the alert's start, the next poll of a job by the schedule, a queued
request's next look."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from handler.core.polling import PollSchedule
from handler.history import HistoryError, Query, Step, Trail
from handler.local.console import _views as views
from handler.local.console import app

NOW = datetime(2026, 1, 15, 12, 30, tzinfo=timezone.utc)


def trail(name: str, start: datetime, *steps: tuple[float, str, str | None, dict[str, Any]]) -> Trail:
    return Trail(
        name,
        tuple(
            Step(start + timedelta(seconds=at), event, fields, status, name, opens=i == 0, seq=i)
            for i, (at, event, status, fields) in enumerate(steps)
        ),
    )


def detached(name: str, start: datetime, took: float, **origin: str) -> Trail:
    return trail(
        name,
        start,
        (0, "detach.requested", "requested", {"origin": origin, "project_id": "p1"}),
        (0.2, "detach.accepted", "accepted", {"job_id": f"job-{name}"}),
        (took, "detach.result", "succeeded", {"outcome": "succeeded", "duration_s": took - 0.2}),
    )


class Reader(views.HistoryReader):
    def __init__(self, trails: list[Trail]) -> None:
        super().__init__(None)
        self.trails = trails

    def query(self, query: Any) -> list[Trail]:
        return [t for t in self.trails if t.outcome == query.outcome or query.outcome is None]


def test_the_plots_count_per_hour_and_time_from_the_alerts_start() -> None:
    alert_start = (NOW - timedelta(minutes=10, seconds=45)).isoformat().replace("+00:00", "Z")
    trails = [
        detached("a", NOW - timedelta(minutes=10), 3.0, starts_at=alert_start),  # 45 s after the alert
        detached("b", NOW - timedelta(hours=2), 12.0),  # no alert time: from its arrival
        detached("c", NOW - timedelta(hours=2), 1.0, starts_at="not a time"),
        detached("d", NOW - timedelta(hours=30), 1.0),  # before the window
        trail("e", NOW - timedelta(minutes=5), (0, "detach.requested", "requested", {})),
        trail(
            "f",
            NOW - timedelta(minutes=5),
            (0, "detach.requested", "requested", {}),
            (0.1, "detach.duplicate", "duplicate", {"original": "accepted"}),
        ),
        trail(
            "g",
            NOW - timedelta(minutes=5),
            (0, "detach.requested", "requested", {}),
            (0.1, "detach.result", "rejected", {"outcome": "rejected", "error_code": "PolicyForce"}),
        ),
    ]
    per_hour, durations, to_detached = views.plots(Reader(trails), NOW).charts
    assert per_hour.summary.startswith("6 requests in the last 24 hours")
    titles = sorted(rect.title for rect in per_hour.rects)
    assert titles == [
        "10:00 UTC: 2 succeeded",
        "12:00 UTC: 1 in flight",
        "12:00 UTC: 1 other",  # the duplicate
        "12:00 UTC: 1 rejected",
        "12:00 UTC: 1 succeeded",
    ]
    assert [r.title for r in durations.rects] == ["<2 s: 2", "2–5 s: 1", "10–20 s: 1"]
    assert [r.title for r in to_detached.rects] == ["<2 s: 2", "10–20 s: 1", "30–60 s: 1"]
    assert "4 detaches" in to_detached.summary


def test_an_empty_window_says_so() -> None:
    charts = views.plots(Reader([]), NOW).charts
    assert charts[0].rects == []
    assert charts[1].summary == "no jobs (accepted to result) in the last 24 hours"


def test_the_next_poll_follows_the_schedule_from_the_last_look() -> None:
    schedule = PollSchedule(first_delay_s=2, factor=0.5, min_delay_s=1, max_delay_s=20)
    start = NOW - timedelta(seconds=30)
    fresh = trail("f", start, (0, "detach.accepted", "accepted", {}))
    looked = trail(
        "g",
        start,
        (0, "detach.accepted", "accepted", {}),
        (2, "poll.status", None, {"status": "RUNNING"}),
        (10, "poll.status", None, {"status": "RUNNING"}),
    )
    first = views._followed(fresh, schedule)
    assert first is not None
    assert (first.polls, first.last_status, first.next_poll_at) == (0, None, start + timedelta(seconds=2))
    later = views._followed(looked, schedule)
    assert later is not None
    # two looks, the last at age 10 s: the next after 0.5 × 10 s
    assert (later.polls, later.last_status) == (2, "RUNNING")
    assert later.next_poll_at == start + timedelta(seconds=15)
    assert views._followed(trail("h", start, (0, "detach.requested", "requested", {})), schedule) is None


def test_a_queued_request_looks_again_after_its_delay() -> None:
    queued = trail(
        "q",
        NOW,
        (0, "detach.queued", "queued", {"reason": "detach of vol-1 running on the server"}),
        (5, "detach.still_queued", "queued", {"retry_after_s": 7}),
    )
    waiting = views._waiting(queued, check_s=5)
    assert waiting is not None
    assert waiting.reason == "detach of vol-1 running on the server"
    assert waiting.next_look_at == NOW + timedelta(seconds=12)
    first_turn = views._waiting(trail("r", NOW, (0, "detach.queued", "queued", {"reason": "r"})), check_s=5)
    assert first_turn is not None
    assert first_turn.next_look_at == NOW + timedelta(seconds=5)
    assert views._waiting(trail("s", NOW, (0, "detach.requested", "requested", {})), check_s=5) is None


def test_the_consoles_reader_reopens_the_history_after_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    reader = views.HistoryReader(f"sqlite:///{path}")
    try:
        assert reader.query(Query()) == []
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE ecs_detach_history")
        with pytest.raises(HistoryError):
            reader.query(Query())
        assert reader.query(Query()) == []  # opened again: the table is made again
    finally:
        reader.close()
    assert not views.HistoryReader(None).enabled


def test_durations_read_as_people_do() -> None:
    assert [app._seconds(v) for v in (None, 0.4, 42, 600, 7200)] == ["", "0.4 s", "42 s", "10 min", "2.0 h"]

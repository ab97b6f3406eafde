"""What each console page shows, read from the history, the approval book and the store.

Pure reading: nothing here changes anything (approvals are decided through ``ApprovalDesk``
by the app). The history is read through one connection of the console's own, one page at a
time (``HistoryStore`` is not shared between threads).
"""

from __future__ import annotations

import json
import statistics
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from handler.core.approval import Approval, ApprovalState
from handler.core.polling import PollSchedule
from handler.guards.blast import BlastRadius
from handler.history import SUMMARY_FIELDS, HistoryStore, Query, Step, Trail, check_url
from handler.settings import Settings

PAGE_SIZE = 25
PLOT_WINDOW_H = 24
PLOT_MAX_REQUESTS = 2000  # the plots read at most this many requests of the window


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def field_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


class HistoryReader:
    """The console's own connection to the history, opened on first use and reopened after an
    error; one query at a time."""

    def __init__(self, url: str | None) -> None:
        self._open = check_url(url) if url is not None else None
        self._store: HistoryStore | None = None
        self._lock = threading.Lock()
        self.url = url

    @property
    def enabled(self) -> bool:
        return self._open is not None

    def query(self, query: Query) -> list[Trail]:
        if self._open is None:
            return []
        with self._lock:
            if self._store is None:
                self._store = self._open()
            try:
                return self._store.query(query)
            except Exception:
                self._store.close()
                self._store = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


# -- the requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    trail: Trail

    @property
    def source(self) -> str:
        return str(self.trail.origin.get("source", ""))

    @property
    def duration_s(self) -> float | None:
        finished = self.trail.finished_at
        return None if finished is None else (finished - self.trail.started_at).total_seconds()


@dataclass(frozen=True)
class RequestsPage:
    rows: list[RequestRow]
    page: int
    has_next: bool


def requests_page(reader: HistoryReader, *, text: str | None, outcome: str | None, page: int) -> RequestsPage:
    offset = (page - 1) * PAGE_SIZE
    trails = reader.query(Query(text=text, outcome=outcome, limit=PAGE_SIZE + 1, offset=offset))
    rows = [RequestRow(trail) for trail in trails[:PAGE_SIZE]]
    return RequestsPage(rows, page, has_next=len(trails) > PAGE_SIZE)


def step_summary(step: Step) -> str:
    return " ".join(
        f"{name}={field_text(step.fields[name])}"
        for name in SUMMARY_FIELDS
        if step.fields.get(name) is not None
    )


# -- in flight ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Followed:
    """A job being followed: accepted, its result not in yet."""

    trail: Trail
    accepted_at: datetime
    polls: int
    last_status: str | None
    next_poll_at: datetime  # when the schedule looks next (expected)


@dataclass(frozen=True)
class Waiting:
    """A request queued behind another detach on its server or volume."""

    trail: Trail
    since: datetime
    reason: str
    next_look_at: datetime


def _followed(trail: Trail, schedule: PollSchedule) -> Followed | None:
    accepted = [step for step in trail.steps if step.event == "detach.accepted"]
    if not accepted:
        return None
    start = accepted[-1].at
    polls = [step for step in trail.steps if step.event == "poll.status" and step.at >= start]
    if polls:
        last = polls[-1]
        age = (last.at - start).total_seconds()
        next_at = last.at + timedelta(seconds=schedule.next_delay(len(polls), age))
        status = str(last.fields.get("status") or "") or None
    else:
        next_at, status = start + timedelta(seconds=schedule.next_delay(0, 0.0)), None
    return Followed(trail, start, len(polls), status, next_at)


def _waiting(trail: Trail, check_s: float) -> Waiting | None:
    queued = [step for step in trail.steps if step.event in ("detach.queued", "detach.still_queued")]
    if not queued:
        return None
    last = queued[-1]
    delay = last.fields.get("retry_after_s")
    wait = float(delay) if isinstance(delay, (int, float)) and not isinstance(delay, bool) else check_s
    reason = str(last.fields.get("reason") or queued[0].fields.get("reason") or "")
    return Waiting(trail, queued[0].at, reason, last.at + timedelta(seconds=wait))


@dataclass(frozen=True)
class InFlight:
    followed: list[Followed]
    waiting: list[Waiting]


def in_flight(reader: HistoryReader, settings: Settings, now: datetime) -> InFlight:
    """Jobs whose result is not in (accepted within the poll timeout), and queued requests
    (within the queue timeout): older ones are not followed any more, whatever the history
    missed of them."""
    margin = settings.invocation_timeout_s + 60
    accepted = reader.query(
        Query(outcome="accepted", since=now - timedelta(seconds=settings.poll_timeout_s + margin), limit=200)
    )
    queued = reader.query(
        Query(outcome="queued", since=now - timedelta(seconds=settings.queue_timeout_s + margin), limit=200)
    )
    schedule = settings.poll_schedule()
    followed = [f for f in (_followed(t, schedule) for t in accepted) if f is not None]
    waiting = [w for w in (_waiting(t, settings.queue_check_s) for t in queued) if w is not None]
    return InFlight(followed, waiting)


# -- approvals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approvals:
    pending: list[Approval]
    decided: list[Approval]


def approvals(recent: Iterable[Approval]) -> Approvals:
    listed = list(recent)
    pending = [a for a in listed if a.state is ApprovalState.PENDING]
    return Approvals(pending, [a for a in listed if a.state is not ApprovalState.PENDING][:50])


# -- safety ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectSafety:
    project_id: str
    used: int
    failures: int

    def breaker_open(self, breaker_failures: int) -> bool:
        return self.failures >= breaker_failures


@dataclass(frozen=True)
class Safety:
    projects: list[ProjectSafety]
    max_per_window: int
    window_s: float
    breaker_failures: int
    breaker_window_s: float


def safety(reader: HistoryReader, blast: BlastRadius, settings: Settings, now: datetime) -> Safety:
    """Each project that detached within the longer window (and each allowed project): the
    slots it holds and its breaker's failures, as the store has them now."""
    max_per_window, window_s, failures, breaker_window_s = blast.limits
    since = now - timedelta(seconds=max(window_s, breaker_window_s))
    seen = {
        str(trail.steps[0].fields["project_id"])
        for trail in reader.query(Query(since=since, limit=PLOT_MAX_REQUESTS))
        if trail.steps[0].fields.get("project_id")
    }
    projects = sorted(seen | set(settings.allowed_projects))
    rows = [ProjectSafety(project, blast.used(project), blast.failures(project)) for project in projects]
    return Safety(rows, max_per_window, window_s, failures, breaker_window_s)


# -- plots -----------------------------------------------------------------------------------------

# The outcomes of the per-hour plot, in stacking order, with their colours.
OUTCOME_GROUPS = (
    ("succeeded", "#2e7d32", ("succeeded",)),
    ("already detached", "#81c784", ("already_detached",)),
    ("failed or timed out", "#c62828", ("failed", "timed_out")),
    ("rejected", "#ef6c00", ("rejected",)),
    ("in flight", "#1565c0", ("requested", "accepted", "queued", "pending_approval")),
    ("other", "#9e9e9e", ()),
)
SECONDS_BUCKETS = (2, 5, 10, 20, 30, 60, 120, 300, 600)  # upper bounds; the last bucket is open


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    """An SVG chart, drawn on the server: bars, axis labels, and a legend."""

    title: str
    summary: str
    width: int = 720
    height: int = 240
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)


_LEFT, _BOTTOM, _TOP = 48, 36, 12


def _plot_area(chart: Chart) -> tuple[float, float]:
    return chart.width - _LEFT - 8, chart.height - _BOTTOM - _TOP


def _y_axis(chart: Chart, top: int) -> None:
    _, height = _plot_area(chart)
    for value in sorted({0, top // 2, top}):
        y = _TOP + height - height * value / top
        chart.labels.append(Label(_LEFT - 6, y + 4, str(value), "end"))


def _group(outcome: str | None) -> str:
    for name, _, members in OUTCOME_GROUPS:
        if outcome in members:
            return name
    return "other"


def per_hour(trails: list[Trail], now: datetime) -> Chart:
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=PLOT_WINDOW_H)
    counts: list[dict[str, int]] = [{} for _ in range(PLOT_WINDOW_H)]
    for trail in trails:
        hour = int((trail.started_at - start).total_seconds() // 3600)
        if 0 <= hour < PLOT_WINDOW_H:
            group = _group(trail.outcome)
            counts[hour][group] = counts[hour].get(group, 0) + 1
    total = sum(sum(c.values()) for c in counts)
    chart = Chart(
        "Requests per hour by outcome",
        f"{total} requests in the last {PLOT_WINDOW_H} hours (UTC hours, by when they arrived)",
    )
    chart.legend = [(name, colour) for name, colour, _ in OUTCOME_GROUPS]
    top = max([sum(c.values()) for c in counts] + [1])
    width, height = _plot_area(chart)
    slot = width / PLOT_WINDOW_H
    for hour, count in enumerate(counts):
        x = _LEFT + hour * slot
        base = _TOP + height
        label = (start + timedelta(hours=hour)).strftime("%H:00")
        for name, colour, _ in OUTCOME_GROUPS:
            n = count.get(name, 0)
            if n:
                h = height * n / top
                base -= h
                chart.rects.append(Rect(x + 2, base, slot - 4, h, colour, f"{label} UTC: {n} {name}"))
        if hour % 3 == 0:
            chart.labels.append(Label(x + slot / 2, _TOP + height + 16, label))
    _y_axis(chart, top)
    return chart


def _bucket_label(index: int) -> str:
    if index == 0:
        return f"<{SECONDS_BUCKETS[0]} s"
    if index == len(SECONDS_BUCKETS):
        return f"≥{SECONDS_BUCKETS[-1]} s"
    return f"{SECONDS_BUCKETS[index - 1]}–{SECONDS_BUCKETS[index]} s"


def histogram(title: str, values: list[float], colour: str, what: str) -> Chart:
    buckets = [0] * (len(SECONDS_BUCKETS) + 1)
    for value in values:
        buckets[
            next((i for i, bound in enumerate(SECONDS_BUCKETS) if value < bound), len(SECONDS_BUCKETS))
        ] += 1
    if values:
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        summary = (
            f"{len(values)} {what}: median {statistics.median(values):.1f} s, 95th percentile {p95:.1f} s"
        )
    else:
        summary = f"no {what} in the last {PLOT_WINDOW_H} hours"
    chart = Chart(title, summary)
    top = max([*buckets, 1])
    width, height = _plot_area(chart)
    slot = width / len(buckets)
    for index, count in enumerate(buckets):
        x = _LEFT + index * slot
        label = _bucket_label(index)
        if count:
            h = height * count / top
            chart.rects.append(Rect(x + 4, _TOP + height - h, slot - 8, h, colour, f"{label}: {count}"))
        chart.labels.append(Label(x + slot / 2, _TOP + height + 16, label))
    _y_axis(chart, top)
    return chart


def _alert_start(trail: Trail) -> datetime:
    """When the alert began (``origin.starts_at``, set by the Alertmanager and Grafana sources),
    else when the request arrived."""
    started = trail.origin.get("starts_at")
    if isinstance(started, str):
        try:
            parsed = datetime.fromisoformat(started.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None and parsed <= trail.started_at:
            return parsed
    return trail.started_at


@dataclass(frozen=True)
class Plots:
    charts: list[Chart]
    capped: bool


def plots(reader: HistoryReader, now: datetime) -> Plots:
    since = now - timedelta(hours=PLOT_WINDOW_H)
    trails = reader.query(Query(since=since, limit=PLOT_MAX_REQUESTS))
    durations, to_detached = [], []
    for trail in trails:
        result = next((s for s in reversed(trail.steps) if s.event == "detach.result"), None)
        if result is None:
            continue
        duration = result.fields.get("duration_s")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            durations.append(float(duration))
        if result.fields.get("outcome") == "succeeded":
            to_detached.append((result.at - _alert_start(trail)).total_seconds())
    charts = [
        per_hour(trails, now),
        histogram("Job duration", durations, "#1565c0", "jobs (accepted to result)"),
        histogram(
            "Time from alert to detached",
            to_detached,
            "#2e7d32",
            "detaches (from the alert's start, or the request's arrival)",
        ),
    ]
    return Plots(charts, capped=len(trails) >= PLOT_MAX_REQUESTS)

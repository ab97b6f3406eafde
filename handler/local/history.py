"""``ecs-detach history``: the requests the audit history keeps, newest first, each with its trail.

Read from ``ECS_DETACH_HISTORY`` (docs/history.md). Filters narrow the list: ``--server``,
``--key`` (an idempotency key), ``--outcome`` (what became of the request: its latest status),
``--since`` (requests that started then or later: an ISO 8601 time, or an age such as ``2h``,
read as ``ecs-detach results --since`` reads it).
Everything shown came from outside (server ids, keys, alert labels, ticket fields): each text
is written with its control characters escaped, so none can forge a line or repaint a terminal.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, TextIO

from handler.history import SUMMARY_FIELDS, Query, Step, Trail
from handler.local.results import parse_since
from handler.support.log import escape_controls


def query(
    *, server: str | None, key: str | None, outcome: str | None, since: str | None, limit: int
) -> Query:
    """The ``Query`` the command's options describe (``ConfigError`` for a bad ``--since``)."""
    start = None if since is None else datetime.fromtimestamp(parse_since(since), timezone.utc)
    return Query(server_id=server, key=key, outcome=outcome, since=start, limit=limit)


def show(trails: list[Trail], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"requests": [trail.as_dict() for trail in trails]}, default=str), file=out)
        return
    if not trails:
        print("no request in the history matches", file=out)
        return
    for number, trail in enumerate(trails):
        if number:
            print(file=out)
        show_trail(trail, out)


def show_trail(trail: Trail, out: TextIO) -> None:
    """One request: a head line (when, outcome, server, volume, time taken), its key, job and
    origin, then each step with its time from the start and what it said."""
    head = [_time(trail.started_at), trail.outcome or "-"]
    if trail.server_id:
        head.append(f"server {trail.server_id}")
    if trail.volume_id:
        head.append(f"volume {trail.volume_id}")
    finished = trail.finished_at
    if finished is not None:
        head.append(f"({_seconds((finished - trail.started_at).total_seconds())})")
    print(_safe("  ".join(head)), file=out)
    details = {"key": trail.key, "job": trail.job_id}
    origin = " ".join(f"{name}={value}" for name, value in sorted(trail.origin.items()))
    if origin:
        details["origin"] = origin
    for name, value in details.items():
        if value:
            print(_safe(f"  {name:<8}{value}"), file=out)
    for step in trail.steps:
        offset = _seconds((step.at - trail.started_at).total_seconds())
        print(_safe(f"  +{offset:<9}{step.event:<26}{_step_details(step)}".rstrip()), file=out)


def _step_details(step: Step) -> str:
    parts = [
        f"{name}={_value(step.fields[name])}" for name in SUMMARY_FIELDS if step.fields.get(name) is not None
    ]
    return " ".join(parts)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _time(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seconds(value: float) -> str:
    return f"{value:.3f}s" if value < 60 else f"{value:.0f}s"


def _safe(text: str) -> str:
    return escape_controls(text)

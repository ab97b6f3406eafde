"""``ecs-detach status KEY|JOB_ID``: what became of one request, from the deployment's store.

A request is found by its idempotency key (``alertmanager:…``, ``webhook:…``, or the default
``{project}/{server}/{volume or device}``), or by the id of the job its detach started. The
answer has the key's record (in progress, queued, or its final outcome), the job's result when
it was reported (outcome, polls, duration, error), and — while the job is still followed and
credentials are at hand — the job as the cloud shows it now. The store keeps a request for
``ECS_DETACH_RECORD_TTL_S`` (default a day); the audit history (``ECS_DETACH_HISTORY``, kept
400 days by default), when there is one, adds the request's trail: every step, with its time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TextIO

from handler.cloud import ApiError, CloudError, EcsClient
from handler.history import HistoryStore, Query, Trail
from handler.local.history import show_trail
from handler.store import ClaimState, Store

_JOB_ID = re.compile(r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})$")


@dataclass
class Status:
    """What the store (and the cloud) say about one request."""

    key: str | None
    state: str  # "unknown", "in_progress", "queued", "done"
    record: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    trail: Trail | None = None  # from the audit history
    history_error: str | None = None  # the history could not be read

    @property
    def job_id(self) -> str | None:
        found = (self.result or {}).get("job_id") or self.record.get("job_id")
        return str(found) if found else None

    @property
    def known(self) -> bool:
        """Whether the store or the history knows the request."""
        return self.state != "unknown" or self.trail is not None

    def as_dict(self) -> dict[str, Any]:
        fields = ("key", "state", "record", "result", "job")
        shown = {name: getattr(self, name) for name in fields}
        shown["history"] = self.trail.as_dict() if self.trail is not None else None
        if self.history_error:
            shown["history_error"] = self.history_error
        return shown


def find(store: Store, reference: str) -> Status:
    """The request ``reference`` names: a key first, else (a job id's form) the job's result."""
    seen = store.peek(reference)
    if seen is not None:
        return _from_record(store, reference, seen.state, seen.record or dict(seen.progress))
    if _JOB_ID.match(reference):
        reported = store.peek(f"result:{reference}")
        if reported is not None and reported.state is ClaimState.DONE and reported.record:
            key = reported.record.get("idempotency_key")
            status = find(store, str(key)) if key else Status(None, "done")
            status.result = reported.record
            return status
        return Status(None, "unknown", {"job_id": reference})
    return Status(None, "unknown")


def _from_record(store: Store, key: str, state: ClaimState, record: dict[str, Any]) -> Status:
    if state is ClaimState.DONE:
        status = Status(key, "done", record)
    else:
        status = Status(key, "queued" if "queued" in record else "in_progress", record)
    job_id = status.job_id
    if job_id:
        reported = store.peek(f"result:{job_id}")
        if reported is not None and reported.state is ClaimState.DONE:
            status.result = reported.record
    return status


def add_trail(status: Status, history: HistoryStore, reference: str) -> None:
    """The request's trail from the history: the one that started its job, else the newest of
    its key (``reference`` is a key or a job id)."""
    job_id = status.job_id or (reference if _JOB_ID.match(reference) else None)
    found = history.query(Query(job_id=job_id, limit=1)) if job_id else []
    if not found:
        found = history.query(Query(key=status.key or reference, limit=1))
    status.trail = found[0] if found else None


def look_up_job(status: Status, ecs: EcsClient, project_id: str | None) -> None:
    """The job as the cloud shows it now, for a request whose result is not in yet."""
    job_id = status.job_id
    if job_id is None or status.result is not None:
        return
    try:
        job = ecs.show_job(job_id, project_id=project_id)
    except ApiError as error:
        status.job = {"error": f"{error.code}: {error.message}"}
        return
    except CloudError as error:
        status.job = {"error": str(error)}
        return
    status.job = {"status": job.status.value, "begin_time": job.begin_time, "end_time": job.end_time}


def show(status: Status, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status.as_dict(), default=str), file=out)
        return
    if status.state == "unknown":
        _show_unknown(status, out)
        return
    print(f"key       {status.key}", file=out)
    record = status.record
    if status.state == "done":
        line = str(record.get("outcome", "done"))
        line += f" ({record['error_code']})" if record.get("error_code") else ""
    elif status.state == "queued":
        line = f"queued behind another detach on its server (since {record['queued'].get('since', '?')})"
    else:
        line = "being handled" + (
            " — detach call made, its job being published" if "job_id" in record else ""
        )
    print(f"request   {line}", file=out)
    if status.job_id:
        print(f"job       {status.job_id}", file=out)
    if status.result is not None:
        result = status.result
        outcome = str(result.get("outcome"))
        detail = f" {result['error_code']}: {result.get('fail_reason')}" if result.get("error_code") else ""
        print(f"result    {outcome}{detail}", file=out)
        print(f"polls     {result.get('polls')}, {result.get('duration_s')} s from acceptance", file=out)
        if result.get("finished_at"):
            print(f"finished  {result['finished_at']}", file=out)
    elif status.job is not None:
        print(f"job now   {status.job.get('status') or status.job.get('error')} (no result yet)", file=out)
    _show_history(status, out)


def _show_unknown(status: Status, out: TextIO) -> None:
    if status.trail is not None:
        print("the store has forgotten it (the record's time to live); the history has:", file=out)
        show_trail(status.trail, out)
        return
    job = f" (job {status.record['job_id']})" if status.record.get("job_id") else ""
    print(f"no request known{job}: never seen, or forgotten after the record's time to live", file=out)
    _show_history(status, out)


def _show_history(status: Status, out: TextIO) -> None:
    if status.history_error:
        print(f"history   unavailable: {status.history_error}", file=out)
    elif status.trail is not None:
        print("history", file=out)
        show_trail(status.trail, out)

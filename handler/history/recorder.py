"""The recorder: ``log_event`` hands it every event; it keeps the steps of requests.

A step is taken in the caller's thread (its time, and its trail when the invocation that logs
it opened one) and put in a bounded in-process buffer; a writer thread writes the buffer in
batches, prunes what is older than the retention, and reopens the database after a failure.
A detach never waits for the history unless ``wait_s`` says so (FunctionGraph: an instance
may be frozen as soon as it answers), and never longer than ``wait_s``; not at all while the
history is down, and once a wait ran out, not again until the writer has caught up.

What is guaranteed (docs/history.md, "What a crash loses"): a step the writer committed is
durable; a step still in the buffer is lost if the process dies (normally the last ~0.1 s;
during an outage of the database, up to the buffer's capacity); a step that finds the buffer
full is dropped at once. Every loss is counted (``stats``) and reported as a ``history.lost``
warning; nothing a history does ever fails a detach.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from handler.core.models import utcnow
from handler.history.models import ENDS_REQUEST, OPENS_REQUEST, OWN_TRAIL, Step, recorded, status_of
from handler.support.log import add_recorder, log_event, redact_text, remove_recorder

if TYPE_CHECKING:  # the stores are the writer's: a cold start's first event does not load them
    from handler.history._base import HistoryRefused, HistoryStore

DEFAULT_CAPACITY = 10_000  # steps held while the database is slow or down
_BATCH = 200
_FLUSH_S = 0.1  # the longest a step waits in the buffer while the database answers
_OPEN_AFTER_S = 0.1  # the writer's pause before it opens the database (``_run``)
_REPORT_EVERY_S = 10.0  # losses are reported at most this often (and when the recorder closes)
_MAX_BACKOFF_S = 10.0


class _Open(NamedTuple):
    """The request the current invocation is handling: its trail and key."""

    trail: str
    key: str | None


class HistoryRecorder:
    def __init__(
        self,
        open_store: Callable[[], HistoryStore],
        *,
        retention_s: float,
        wait_s: float = 0.0,
        capacity: int = DEFAULT_CAPACITY,
        prune_every_s: float = 600.0,
        prune_batch: int = 1000,
        prune_batches: int = 10,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._open_store = open_store
        self._retention = timedelta(seconds=retention_s)
        self._wait_s = wait_s
        self._prune_every_s = prune_every_s
        self._prune_batch = prune_batch
        self._prune_batches = prune_batches
        self._clock = clock
        # The buffer, guarded by one lock with two conditions: ``_cond`` wakes the callers waiting
        # for their step's commit, ``_arrived`` the writer. A deque, not a ``queue.Queue``: that
        # loads ``queue`` and ``heapq`` and two C extensions, about 0.1 MiB of a cold start.
        self._buffer: deque[Step] = deque()
        self._capacity = capacity
        self._open: ContextVar[_Open | None] = ContextVar(f"history-{id(self)}", default=None)
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._arrived = threading.Condition(lock)
        self._taken = 0  # steps put in the buffer, in order
        self._written = 0  # of those, committed (or given up)
        self._behind = 0  # a wait for this step timed out: none waits until it is written
        self._lost = 0
        self._reported = 0
        self._healthy = True
        self._error = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    # -- the caller's side: log_event ----------------------------------------------------------

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        if not recorded(event):
            return
        step = self._step(event, fields)
        with self._cond:
            if self._stopping.is_set():
                self._lost += 1
                return
            if len(self._buffer) >= self._capacity:
                self._lost += 1
                return
            self._buffer.append(step)
            self._arrived.notify()
            self._taken += 1
            ticket = self._taken
            if self._wait_s > 0 and self._healthy and self._written >= self._behind:
                written = self._cond.wait_for(
                    lambda: self._written >= ticket or not self._healthy, self._wait_s
                )
                if not written:  # slow: no step waits again until the writer has caught up
                    self._behind = ticket

    def _step(self, event: str, fields: Mapping[str, Any]) -> Step:
        """The step, with its trail when this invocation's request is known (``models``)."""
        now = self._clock()
        key = fields.get("idempotency_key")
        if event == OPENS_REQUEST:
            trail = uuid.uuid4().hex
            self._open.set(_Open(trail, str(key) if key else None))
            return Step(now, event, fields, status_of(event, fields, in_request=True), trail, opens=True)
        if event in OWN_TRAIL:
            status = status_of(event, fields, in_request=False)
            return Step(now, event, fields, status, uuid.uuid4().hex, opens=True)
        current = self._open.get()
        in_request = (
            current is not None
            and event.startswith("detach.")
            and (key is None or current.key is None or str(key) == current.key)
        )
        if event in ENDS_REQUEST:
            self._open.set(None)
        joined = current.trail if in_request and current is not None else None
        return Step(now, event, fields, status_of(event, fields, in_request=in_request), joined)

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        store: HistoryStore | None = None
        # A moment before opening, unless steps wait for their commit: a cold start handles its
        # first event meanwhile, and the open (a new SQLite file: its schema, a dozen syncs) does
        # not compete with it; its steps wait in the buffer, as for any batch (``_take``).
        if self._wait_s <= 0:
            self._stopping.wait(_OPEN_AFTER_S)
        try:  # then at once: the retention is kept, and an unreachable history is reported, before any step
            store = self._open_store()
        except Exception as error:
            self._down(error)
        held: list[Step] = []
        backoff = 0.5
        next_prune = time.monotonic()
        last_report = time.monotonic()
        while True:
            if not held:
                held = self._take()
            if not held and self._stopping.is_set():
                break
            if held:
                try:
                    store = store or self._open_store()
                    self._write(store, held)
                except Exception as error:  # the database is down: keep what is left, try again
                    self._down(error)
                    if self._stopping.is_set():
                        break
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    continue
                backoff = 0.5
            if store is not None and time.monotonic() >= next_prune:
                self._prune(store)
                next_prune = time.monotonic() + self._prune_every_s
            if time.monotonic() - last_report >= _REPORT_EVERY_S:
                self._report_lost()
                last_report = time.monotonic()
        with self._cond:
            self._lost += len(held) + len(self._buffer)
            self._written = self._taken  # nobody waits for what will never be written
            self._cond.notify_all()
        self._report_lost()
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def _take(self) -> list[Step]:
        """The next batch: waits a moment for the first step, then gathers the steps that come
        within ``_FLUSH_S`` of it (one commit for them all, not one each; the writer sleeps
        meanwhile instead of waking for every step), unless a caller waits for its step
        (``wait_s``) or a whole batch is there already (a burst is written back to back).
        Stopping cuts the sleep short."""
        with self._arrived:
            if not self._buffer:
                self._arrived.wait(_FLUSH_S)
            if not self._buffer:
                return []
            steps = [self._buffer.popleft()]
            gather = self._wait_s <= 0 and len(self._buffer) < _BATCH - 1
        if gather:
            self._stopping.wait(_FLUSH_S)
        with self._arrived:
            while len(steps) < _BATCH and self._buffer:
                steps.append(self._buffer.popleft())
        return steps

    def _write(self, store: HistoryStore, held: list[Step]) -> None:
        """Write ``held``, emptying it as steps are done. A step the database refuses (its data,
        not the database being down) is dropped, counted and reported, and the others written:
        one bad step never blocks the history. A database that is down raises, and what is not
        written yet stays in ``held``."""
        from handler.history._base import HistoryRefused  # noqa: PLC0415 (loaded by the writer's store)

        try:
            store.append(held)
        except HistoryRefused:
            while held:  # one at a time, to find the refused one
                try:
                    store.append(held[:1])
                except HistoryRefused as error:
                    self._refused(held[0], error)
                held.pop(0)
                self._wrote(1)
            return
        self._wrote(len(held))
        held.clear()

    def _refused(self, step: Step, error: HistoryRefused) -> None:
        with self._cond:
            self._lost += 1
            self._reported += 1  # reported here, with its reason
        log_event("history.refused", level=logging.WARNING, step=step.event, error=str(error)[:500])

    def _wrote(self, count: int) -> None:
        with self._cond:
            self._written += count
            recovered = not self._healthy
            self._healthy = True
            self._cond.notify_all()
        if recovered:
            log_event("history.recovered")

    def _down(self, error: Exception) -> None:
        reason = redact_text(f"{type(error).__name__}: {error}")
        with self._cond:
            first = self._healthy
            self._healthy, self._error = False, reason
            self._cond.notify_all()  # callers waiting for their step stop waiting
        if first:
            log_event("history.unavailable", level=logging.WARNING, error=reason)

    def _prune(self, store: HistoryStore) -> None:
        """Steps older than the retention, in bounded batches: never one unbounded DELETE."""
        before = self._clock() - self._retention
        removed = 0
        try:
            for _ in range(self._prune_batches):
                count = store.prune(before, self._prune_batch)
                removed += count
                if count < self._prune_batch:
                    break
        except Exception as error:  # the next write reports the database; the next pass prunes
            log_event("history.prune_failed", level=logging.WARNING, error=redact_text(str(error)))
        if removed:
            log_event("history.pruned", removed=removed, before=before.isoformat())

    def _report_lost(self) -> None:
        with self._cond:
            lost, self._reported = self._lost - self._reported, self._lost
            total, error = self._lost, self._error
        if lost:
            log_event("history.lost", level=logging.WARNING, steps=lost, total=total, error=error)

    # -- the owner's side ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Steps written, waiting in the buffer, and lost; whether the database answers."""
        with self._cond:
            return {
                "written": self._written,
                "buffered": self._taken - self._written,
                "lost": self._lost,
                "healthy": self._healthy,
                "error": self._error or None,
            }

    def flush(self, timeout_s: float) -> bool:
        """Wait until every step taken so far is written (True), at most ``timeout_s``."""
        with self._cond:
            ticket = self._taken
            return self._cond.wait_for(lambda: self._written >= ticket, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (for at most ``timeout_s``; at once gives up while the
        database is down), report what was lost, and stop."""
        self._stopping.set()
        self._thread.join(timeout_s)


_shared: dict[str, tuple[HistoryRecorder, int]] = {}
_shared_lock = threading.Lock()


def acquire_recorder(url: str, make: Callable[[], HistoryRecorder]) -> HistoryRecorder:
    """The recorder of the history ``url``, registered with ``log_event``: one per history in a
    process, shared by every runtime that names it (so that no step is written twice)."""
    with _shared_lock:
        recorder, users = _shared.get(url) or (None, 0)
        if recorder is None:
            recorder = make()
            add_recorder(recorder)
        _shared[url] = (recorder, users + 1)
        return recorder


def release_recorder(recorder: HistoryRecorder) -> None:
    """One runtime is done with ``recorder``; the last one unregisters and closes it."""
    with _shared_lock:
        for url, (shared, users) in list(_shared.items()):
            if shared is recorder:
                if users > 1:
                    _shared[url] = (shared, users - 1)
                    return
                del _shared[url]
                break
        remove_recorder(recorder)
    recorder.close()

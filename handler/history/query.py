"""Which requests a reader of the history lists (the CLI, the console, ``ecs-detach status``):
apart from the steps and trails (``handler.history.models``), which every function writes, so
that a cold start does not build it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Query:
    """Which requests to list: newest first, at most ``limit``; every filter narrows."""

    server_id: str | None = None
    key: str | None = None
    job_id: str | None = None  # the request whose detach started this job
    outcome: str | None = None
    since: datetime | None = None  # requests that started at or after this
    trail: str | None = None  # the one request of this trail
    # Requests one of whose steps names a server, volume, idempotency key or job containing
    # this text (case as written), or whose trail it is.
    text: str | None = None
    limit: int = 50
    offset: int = 0  # skip this many of the newest (pages)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if self.offset < 0:
            raise ValueError("offset must not be negative")
        if self.since is not None and self.since.tzinfo is None:
            raise ValueError("since must carry a time zone")

"""Store fixtures: both backends behind one interface, and Redis's reachability.

A Redis test skips when nothing answers on 127.0.0.1:6379, except under CI=true, where it
fails: CI starts Redis (.ci/run), so a missing one is a broken build, not a skip.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from handler.store import RedisStore, SqliteStore, Store

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

_redis_reachable: list[bool] = []


def require_redis() -> None:
    """Skip (or under CI=true, fail) the test unless Redis answers on loopback."""
    if not _redis_reachable:
        try:
            socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1).close()
        except OSError:
            _redis_reachable.append(False)
        else:
            _redis_reachable.append(True)
    if not _redis_reachable[0]:
        message = f"no Redis on {REDIS_HOST}:{REDIS_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true: .ci/run should have started it")
        pytest.skip(message)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """How a test reaches one kind of store; every ``make()`` opens the same stored data."""

    kind = ""

    def __init__(self) -> None:
        self.opened: list[Store] = []

    def make(self, **options: Any) -> Store:
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store."""
        raise NotImplementedError

    def close(self) -> None:
        for store in self.opened:
            store.close()


class SqliteBackend(Backend):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.clock = FakeClock()

    def make(self, **options: Any) -> Store:
        store = SqliteStore(self.path, clock=self.clock, **options)
        self.opened.append(store)
        return store

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds


class RedisBackend(Backend):
    kind = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"ecs-detach-test:{uuid.uuid4().hex[:12]}:"

    def make(self, **options: Any) -> Store:
        store = RedisStore(REDIS_URL, prefix=self.prefix, **options)
        self.opened.append(store)
        return store

    def advance(self, seconds: float) -> None:
        time.sleep(seconds + 0.01)  # Redis expiries and TIME are in whole milliseconds

    def close(self) -> None:
        super().close()
        with redis.Redis(host=REDIS_HOST, port=REDIS_PORT) as client:
            keys = list(client.scan_iter(match=self.prefix + "*"))
            if keys:
                client.delete(*keys)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "redis":
        require_redis()
        chosen: Backend = RedisBackend()
    else:
        chosen = SqliteBackend(tmp_path / "state" / "store.db")
    yield chosen
    chosen.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.make()

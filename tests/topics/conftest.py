"""Topic fixtures: every backend behind one factory, and the brokers' reachability.

A broker test skips when its broker does not answer on loopback, except under CI=true, where
it fails: CI starts every broker (.ci/run), so a missing one is a broken build, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.topics import Topic, open_topic
from tests.topics.brokers import BACKENDS, PORTS, Backend, reachable

_reachable: dict[str, bool] = {}


def require_broker(kind: str) -> None:
    """Skip (or under CI=true, fail) the test unless the ``kind`` broker answers."""
    if kind not in PORTS:
        return
    if kind not in _reachable:
        _reachable[kind] = reachable(PORTS[kind])
    if not _reachable[kind]:
        message = f"no {kind} broker on 127.0.0.1:{PORTS[kind]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true: .ci/run should have started it")
        pytest.skip(message)


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    require_broker(request.param)
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def topic_name() -> str:
    """A topic name of this test alone, so runs and tests never see each other's messages."""
    return f"t-{uuid.uuid4().hex[:12]}"


MakeTopic = Callable[..., Topic]


@pytest.fixture
def make(backend: Backend, topic_name: str) -> Iterator[MakeTopic]:
    """Open topics of this test (``make()``, ``make(".dead")``, ``make(port=proxy.port)``),
    close them all at the end and delete what they left on the broker."""
    opened: list[Any] = []
    names: set[str] = set()

    def make(suffix: str = "", *, port: int | None = None, **options: Any) -> Topic:
        name = topic_name + suffix
        names.add(name.removesuffix(".dead"))
        topic = open_topic(backend.url(name, port), default_name="unused", **options)
        opened.append(topic)
        return topic

    yield make
    for topic in opened:
        topic.close()
    for name in names:
        backend.cleanup(name, [topic for topic in opened if topic.name.removesuffix(".dead") == name])

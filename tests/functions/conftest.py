"""The deterministic tier: both functions in-process against the emulator's HTTP layer, one fake
clock for everything (the emulator's jobs, the signatures, the store's leases, the functions'
schedule, the client's backoff), no sockets and no sleeps.

The cloud calls go through the real ``EcsClient``/``EvsClient`` (signing, error parsing,
retries) into the emulator's Starlette app, driven by a small synchronous ASGI transport. The
topics are in-memory publishers the tests read and can make fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pydantic import SecretStr

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, FaultConfig, create_app, load_seed
from handler.cloud import Credentials, EcsClient, EvsClient
from handler.core.approval_policy import ApprovalPolicy
from handler.core.policy import SafetyPolicy
from handler.core.polling import PollSchedule
from handler.functions.approvals import ApprovalDesk
from handler.functions.detach import DetachFunction
from handler.functions.jobs import JobsFunction, JobStep
from handler.functions.poll import PollFunction
from handler.guards.blast import BlastRadius
from handler.guards.idempotency import Guard
from handler.store import SqliteStore
from handler.store.approvals import open_book
from handler.topics import TopicError
from tests.support import PID, FakeClock

CREDENTIALS = Credentials(
    access_key=DEMO_CREDENTIAL.access_key,
    secret_key=SecretStr(DEMO_CREDENTIAL.secret_key),
    project_id=PID,
)


class AsgiTransport(httpx.BaseTransport):
    """Hands each request to an ASGI app on a private event loop and returns its answer. A
    request that ``fail`` picks gets no answer at all (``httpx.ConnectError``), like a network
    that drops it."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self.fail: Callable[[httpx.Request], bool] = lambda _request: False
        self.sent: list[httpx.Request] = []  # every request, as it went on the wire

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        if self.fail(request):
            raise httpx.ConnectError("dropped by the test", request=request)
        raw_path = request.url.raw_path.split(b"?", 1)[0]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": request.url.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "server": (request.url.host, request.url.port or 80),
            "client": ("127.0.0.1", 40000),
        }
        body = request.read()
        answer: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        done = asyncio.Event()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    done.set()

        self._loop.run_until_complete(self._app(scope, receive, send))
        return httpx.Response(answer["status"], headers=answer["headers"], content=answer["body"])

    def close(self) -> None:
        self._loop.close()


class Inbox:
    """A topic that keeps what is published, in order, with each message's delay; ``down``
    makes every publish fail the way a topic whose broker is gone fails."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.messages: list[tuple[float, str]] = []  # (due, body)
        self.down = False

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        if self.down:
            raise TopicError("the broker is not answering")
        self.messages.append((self._clock() + delay, body))
        return str(len(self.messages))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.messages]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]

    def next_type(self) -> str | None:
        """The type of the message that falls due first."""
        if not self.messages:
            return None
        return str(json.loads(min(self.messages, key=lambda item: item[0])[1])["type"])

    def take_due(self) -> str | None:
        """The earliest message, with the clock moved to when it is due."""
        if not self.messages:
            return None
        due, body = min(self.messages, key=lambda item: item[0])
        self.messages.remove((due, body))
        self._clock.now = max(self._clock.now, due)
        return body


@dataclass
class World:
    clock: FakeClock
    backend: EcsBackend
    transport: AsgiTransport
    ecs: EcsClient
    evs: EvsClient
    store: SqliteStore
    jobs: Inbox
    results: Inbox
    slept: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def deletes(self) -> list[str]:
        calls, _ = self.backend.ledger()
        return [
            call.volume_id or "" for call in calls if call.method == "DELETE" and 200 <= call.status < 300
        ]

    def attached(self, server_id: str) -> set[str]:
        return {v.volume.id for v in self.backend.get_server(PID, server_id).volumes}

    def faults(self, **config: Any) -> None:
        self.backend.set_faults(FaultConfig.model_validate(config))

    def results_of(self) -> list[dict[str, Any]]:
        return [event["data"] for event in self.results.events()]

    def sign_with(self, credentials: Credentials) -> None:
        """Cloud clients that sign with ``credentials`` from now on (same emulator and clock; the
        old clients are not closed: that would close the transport they share)."""
        self.ecs, self.evs = _clients(self.transport, self.clock, self.slept, credentials)


@dataclass
class Functions:
    detach: DetachFunction
    poll: PollFunction
    jobs: JobsFunction
    guard: Guard
    blast: BlastRadius
    desk: ApprovalDesk | None = None

    def step(self, world: World) -> JobStep | None:
        """Consume the next due message of the jobs topic (None: it is empty); a message that
        must come back goes back with its delay, as every consumer does."""
        body = world.jobs.take_due()
        if body is None:
            return None
        step = self.jobs(body)
        if step.again is not None:
            world.jobs.publish(step.again, delay=step.delay_s)
        return step

    def drain(self, world: World, *, steps: int = 200) -> list[JobStep]:
        """Consume the jobs topic in due order, moving the clock, until it is empty."""
        done: list[JobStep] = []
        for _ in range(steps):
            step = self.step(world)
            if step is None:
                return done
            done.append(step)
        raise AssertionError(f"the jobs topic did not empty in {steps} steps: {world.jobs.types()}")


def _clients(
    transport: AsgiTransport, clock: FakeClock, slept: list[float], credentials: Credentials
) -> tuple[EcsClient, EvsClient]:
    def sleep(seconds: float) -> None:  # the client's backoff: time passes, nobody waits
        slept.append(seconds)
        clock.advance(seconds)

    def when() -> datetime:
        return datetime.fromtimestamp(clock(), timezone.utc)

    return (
        EcsClient("http://ecs.test", credentials, transport=transport, clock=when, sleep=sleep),
        EvsClient("http://ecs.test", credentials, transport=transport, clock=when, sleep=sleep),
    )


@pytest.fixture
def world() -> Iterator[World]:
    clock = FakeClock()
    config = EmulatorConfig(job_init_s=0.5, job_duration_s=3.0)
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL], config=config, clock=clock)
    transport = AsgiTransport(create_app(backend))
    slept: list[float] = []
    ecs, evs = _clients(transport, clock, slept, CREDENTIALS)

    box = World(
        clock,
        backend,
        transport,
        ecs,
        evs,
        SqliteStore(":memory:", clock=clock),
        Inbox(clock),
        Inbox(clock),
        slept,
    )
    yield box
    box.ecs.close()
    box.evs.close()
    box.store.close()
    transport.close()


def build(
    world: World,
    *,
    policy: SafetyPolicy | None = None,
    dry_run: bool = False,
    max_per_window: int = 10,
    breaker_failures: int = 3,
    poll_timeout_s: float = 600.0,
    queue_timeout_s: float = 3600.0,
    project: str | None = PID,
    approval: ApprovalPolicy | None = None,
) -> Functions:
    """The two functions as the composition root wires them, on the world's fake clock; with
    ``approval``, the approval desk too (its book in the world's store)."""
    guard = Guard(world.store, in_progress_ttl_s=60.0, record_ttl_s=86400.0, lock_ttl_s=poll_timeout_s + 60.0)
    blast = BlastRadius(
        world.store,
        max_per_window=max_per_window,
        window_s=600.0,
        breaker_failures=breaker_failures,
        breaker_window_s=600.0,
    )
    schedule = PollSchedule(first_delay_s=2.0, factor=0.15, min_delay_s=1.0, max_delay_s=20.0)
    desk = None
    if approval is not None:
        desk = ApprovalDesk(
            approval,
            open_book(world.store),
            world.store,
            world.jobs,
            world.results,
            source="test",
            keep_s=86400.0,
            link_secret=b"k" * 32,
            base_url="https://detach.example.com",
            clock=world.now,
        )
    detach = DetachFunction(
        world.ecs,
        world.evs,
        world.jobs,
        world.results,
        policy=policy or SafetyPolicy(),
        guard=guard,
        blast=blast,
        default_project_id=project,
        source="test",
        schedule=schedule,
        poll_timeout_s=poll_timeout_s,
        busy_retry_s=30.0,
        queue_timeout_s=queue_timeout_s,
        queue_check_s=5.0,
        dry_run=dry_run,
        approvals=desk,
        clock=world.now,
    )
    poll = PollFunction(
        world.ecs, world.results, source="test", schedule=schedule, guard=guard, blast=blast, clock=world.now
    )
    return Functions(detach, poll, JobsFunction(detach, poll), guard, blast, desk)

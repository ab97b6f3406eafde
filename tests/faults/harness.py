"""The fault suite's run: the whole flow on loopback while brokers and processes are killed.

One run, for one backend: the emulator in this process (one data disk per server, jobs of a
few seconds), a broker of the run's own (``tests.faults.instances``; none for SQLite), then
``ecs-detach up`` (webhook, poll worker, relay) and ``ecs-detach worker`` (poll worker,
relay) as processes against them. Senders post one detach request per disk at a steady rate
and retry a 5xx or a refused connection with the same idempotency key until they get an
answer; a few more *quiet* senders post while the jobs broker is down and never retry (the
publish-failure case: only the relay can save their jobs). Meanwhile the broker is killed
with ``-9`` and restarted on the same data, then ``up``, then the worker.

The invariants, checked at the end (``Run.problems``): every request answered 202 has exactly
one result (one distinct result event: a redelivered one has the same id); every disk the
cloud was asked to detach (the emulator's ledger) was asked once and has exactly one result;
nothing is left on the jobs topic or any dead-letter topic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import make_seed
from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app
from handler.local._serve import BackgroundServer
from handler.store import open_store
from handler.topics import Topic, open_topic, topic_url
from tests.faults.instances import INSTANCES, Instance, answers, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "faults-webhook-token-0123456789"
BACKENDS = ("sqlite", "redis", "nats", "amqp")
VISIBILITY_TIMEOUT_S = 6  # a lease: a message a killed process held is delivered again after it


@dataclass(frozen=True)
class Scenario:
    backend: str  # where the topics are
    redis_store: bool = False  # the store on the (killed) Redis too, else a SQLite file
    requests: int = 12  # one disk each
    rate: float = 6.0  # requests per second
    job_s: float = 2.0  # how long the emulator's detach jobs run
    quiet: int = 3  # requests sent while the jobs broker is down, never retried
    broker_down_s: float = 2.0
    kill_up: bool = True
    kill_worker: bool = True
    timeout_s: float = 90.0  # for every result to arrive after the last fault


@dataclass
class Sent:
    key: str
    volume_id: str
    retries: bool
    status: int | None = None  # the last answer's HTTP status (None: no answer at all)
    attempts: int = 0


@dataclass
class Run:
    scenario: Scenario
    sent: list[Sent] = field(default_factory=list)
    # idempotency key → distinct result events (a result delivered again is the same CloudEvent,
    # same id, which consumers de-duplicate: docs/resilience.md); ``redelivered`` counts those.
    results: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
    seen: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)  # result type → count
    deletes: Counter[str] = field(default_factory=Counter)  # volume → successful DELETEs
    left: dict[str, int] = field(default_factory=dict)  # topic → messages left
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)  # what happened when, for the report

    def note(self, what: str, started: float) -> None:
        self.events.append(f"{time.monotonic() - started:6.1f}s {what}")

    @property
    def label(self) -> str:
        store = "Redis" if self.scenario.redis_store else "SQLite"
        return f"{self.scenario.backend} ({store} store)"

    @property
    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.status == 202]

    def missing(self) -> list[str]:
        """Keys answered 202, or whose disk was detached, without exactly one result."""
        detached = {s.key for s in self.sent if self.deletes[s.volume_id]}
        owed = {s.key for s in self.accepted} | detached
        return sorted(key for key in owed if self.results[key] == 0)

    def problems(self) -> list[str]:
        found = []
        missing = self.missing()
        if missing:
            found.append(f"{len(missing)} accepted or detached request(s) without a result: {missing[:5]}")
        twice = sorted(k for k, n in self.results.items() if n > 1)
        if twice:
            found.append(f"{len(twice)} request(s) with more than one result: {twice[:5]}")
        again = sorted(v for v, n in self.deletes.items() if n > 1)
        if again:
            found.append(f"{len(again)} disk(s) detached more than once: {again[:5]}")
        unanswered = [s.key for s in self.sent if s.retries and s.status not in (202, 200)]
        if unanswered:
            found.append(f"{len(unanswered)} retrying sender(s) never accepted: {unanswered[:5]}")
        leftovers = {topic: n for topic, n in self.left.items() if n}
        if leftovers:
            found.append(f"messages left on topics: {leftovers}")
        return found


class Proc:
    """``ecs-detach ARGS`` as a process of its own group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path, port: int) -> None:
        self.name, self._args, self._env, self._port = name, args, env, port
        self.log = workdir / f"{name}.log"
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "handler.local.cli", *self._args],
                cwd=self._workdir,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not answers(self._port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.tail()}")
            time.sleep(0.1)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
        self._process = None

    def tail(self, lines: int = 20) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


def _env(emulator_url: str, jobs: str, results: str, store: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "ECS_DETACH_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ECS_DETACH_ECS_ENDPOINT": emulator_url,
            "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
            "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
            "ECS_DETACH_JOBS_TOPIC": jobs,
            "ECS_DETACH_RESULTS_TOPIC": results,
            "ECS_DETACH_STORE": store,
            "ECS_DETACH_WEBHOOK_BEARER_TOKENS": json.dumps([TOKEN]),
            "ECS_DETACH_FIRST_POLL_S": "0.5",
            "ECS_DETACH_MIN_POLL_DELAY_S": "0.3",
            "ECS_DETACH_MAX_POLL_DELAY_S": "1",
            "ECS_DETACH_HTTP_TIMEOUT_S": "3",
            "ECS_DETACH_CONNECT_TIMEOUT_S": "2",
            "ECS_DETACH_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "ECS_DETACH_MAX_DELIVERIES": "50",
            # A claim whose owner died lapses after this; the relay takes noted jobs sooner.
            "ECS_DETACH_INVOCATION_TIMEOUT_S": "15",
            "ECS_DETACH_RELAY_AFTER_S": "2",
            "ECS_DETACH_RELAY_EVERY_S": "0.5",
            "ECS_DETACH_BUSY_RETRY_S": "1",
            "ECS_DETACH_MAX_DETACHES_PER_WINDOW": "10000",
            "ECS_DETACH_BREAKER_FAILURES": "10000",
            "ECS_DETACH_LOG_LEVEL": "WARNING",
            "HOME": str(workdir),
        }
    )
    return env


class Sender:
    """Posts one request per disk at the scenario's rate, each in its own thread."""

    def __init__(self, url: str, run: Run, deadline: float) -> None:
        self._url = url
        self._run = run
        self._deadline = deadline
        self._threads: list[threading.Thread] = []

    def send(self, server_id: str, volume_id: str, *, retries: bool) -> None:
        sent = Sent(f"faults-{uuid.uuid4().hex[:12]}", volume_id, retries)
        self._run.sent.append(sent)
        body = {"server_id": server_id, "volume_id": volume_id, "idempotency_key": sent.key}
        thread = threading.Thread(target=self._post, args=(sent, body), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _post(self, sent: Sent, body: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < self._deadline:
                sent.attempts += 1
                wait = 0.5
                try:
                    answer = client.post(f"{self._url}/", json=body, headers=headers)
                except httpx.TransportError:  # `up` is down: connection refused or cut
                    sent.status = None
                else:
                    sent.status = answer.status_code
                    if answer.status_code < 500:
                        return
                    wait = min(float(answer.headers.get("Retry-After", "1")), 1.0)
                if not sent.retries:
                    return
                time.sleep(wait)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(max(self._deadline - time.monotonic(), 0.1))


class Collector:
    """Reads the results topic in this process, surviving the broker's absence."""

    def __init__(self, url: str, run: Run) -> None:
        self._url = url
        self._run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.topic: Topic | None = None

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.topic is None:
                    self.topic = open_topic(self._url, default_name="results", visibility_timeout=10)
                for delivery in self.topic.receive(50, wait=0.3):
                    event = json.loads(delivery.body)
                    if event["id"] in self._run.seen:
                        self._run.redelivered += 1
                    else:
                        self._run.seen.add(event["id"])
                        self._run.results[event["data"]["idempotency_key"]] += 1
                        self._run.outcomes[event["type"].removeprefix("ecs-detach.")] += 1
                    self.topic.ack(delivery)
            except Exception:  # the broker is down: try again shortly
                time.sleep(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@contextlib.contextmanager
def _broker(kind: str, workdir: Path) -> Iterator[Instance | None]:
    if kind == "sqlite":
        yield None
        return
    broker = INSTANCES[kind](workdir).start()
    try:
        yield broker
    finally:
        broker.kill()


def run(scenario: Scenario, workdir: Path) -> Run:
    report = Run(scenario)
    started = time.monotonic()
    count = scenario.requests + scenario.quiet
    seed, pairs = make_seed(count, 1, seed=11)
    config = EmulatorConfig(job_init_s=0.2, job_duration_s=scenario.job_s)
    backend = EcsBackend.from_seed(seed, credentials=[DEMO_CREDENTIAL], config=config)
    workdir.mkdir(parents=True, exist_ok=True)
    with _broker(scenario.backend, workdir) as broker, BackgroundServer(create_app(backend)) as cloud:
        base = broker.url() if broker is not None else f"sqlite:///{workdir / 'topics.db'}"
        jobs, results = topic_url(base, "jobs"), topic_url(base, "results")
        if scenario.redis_store:
            store = f"{base}?prefix=faults{uuid.uuid4().hex[:6]}"
        else:
            store = f"sqlite:///{workdir / 'store.db'}"
        env = _env(cloud.url, jobs, results, store, workdir)
        web_port = free_port()
        up = Proc("up", ["up", "--port", str(web_port), "--concurrency", "2"], env, workdir, web_port)
        health = free_port()
        worker = Proc(
            "worker", ["worker", "--concurrency", "2", "--health-port", str(health)], env, workdir, health
        )
        collector = Collector(results, report)
        up.start()
        worker.start()
        collector.start()
        report.note("up, worker and collector started", started)
        sender = Sender(f"http://127.0.0.1:{web_port}", report, time.monotonic() + scenario.timeout_s)
        try:
            loud, quiet = pairs[: scenario.requests], pairs[scenario.requests :]
            interval = 1.0 / scenario.rate
            for index, (server_id, volume_id) in enumerate(loud):
                if broker is not None and index == len(loud) // 3:
                    broker.kill()
                    report.note(f"{scenario.backend} killed -9", started)
                    for quiet_server, quiet_volume in quiet:
                        sender.send(quiet_server, quiet_volume, retries=False)
                    time.sleep(scenario.broker_down_s)
                    broker.start()
                    report.note(f"{scenario.backend} restarted on the same data", started)
                if scenario.kill_up and index == 2 * len(loud) // 3:
                    if broker is None:  # SQLite: the quiet senders meet a killed `up` instead
                        for quiet_server, quiet_volume in quiet:
                            sender.send(quiet_server, quiet_volume, retries=False)
                        time.sleep(0.05)
                    up.kill()
                    report.note("up killed -9 while requests arrive", started)
                    up.start()
                    report.note("up restarted", started)
                sender.send(server_id, volume_id, retries=True)
                time.sleep(interval)
            if scenario.kill_worker:
                time.sleep(scenario.job_s / 2)  # jobs are being polled now
                worker.kill()
                report.note("worker killed -9 while it polls", started)
                worker.start()
                report.note("worker restarted", started)
            sender.join()
            report.note("every sender has its answer", started)
            deadline = time.monotonic() + scenario.timeout_s
            while time.monotonic() < deadline:
                calls, _ = backend.ledger()
                report.deletes = Counter(
                    c.volume_id or "" for c in calls if c.method == "DELETE" and 200 <= c.status < 300
                )
                if not report.missing():
                    break
                time.sleep(0.5)
            report.note(f"{sum(report.results.values())} results", started)
            time.sleep(2.0)  # a second result would come now, and late duplicates are consumed
            # A message the killed worker had leased is delivered again only when its lease
            # lapses, and consumed then: left on a topic is what is still there a lease (and a
            # margin) later, not what waits for its lease at the moment the results are in.
            drained_by = time.monotonic() + VISIBILITY_TIMEOUT_S + 3
            while any(_left(jobs, results).values()) and time.monotonic() < drained_by:
                time.sleep(0.5)
        finally:
            up.kill(signal.SIGTERM)
            worker.kill(signal.SIGTERM)
            collector.stop()
            if collector.topic is not None:
                collector.topic.close()
        report.left = _left(jobs, results)
        report.seconds = time.monotonic() - started
        for key in report.missing():  # what the sender saw, and what the store knows
            sent = next(s for s in report.sent if s.key == key)
            report.events.append(
                f"missing {key}: answered {sent.status} after {sent.attempts} attempt(s), "
                f"retries={sent.retries}, record {_record(store, key)}"
            )
        if report.problems():
            report.events.append("--- up ---\n" + up.tail())
            report.events.append("--- worker ---\n" + worker.tail())
    return report


def _record(store_url: str, key: str) -> str:
    store = open_store(store_url)
    try:
        claim = store.peek(key)
    finally:
        store.close()
    if claim is None:
        return "none"
    return f"{claim.state.value} {claim.record or claim.progress}"


def _left(jobs: str, results: str) -> dict[str, int]:
    left = {}
    for url, name in ((jobs, "jobs"), (results, "results"), (f"{jobs}.dead", "jobs.dead")):
        topic = open_topic(url, default_name=name)
        try:
            left[name] = topic.pending()
        finally:
            topic.close()
    return left

"""The storm test: many detach events through the real topics, several worker processes killed
at random, the emulator failing calls and jobs; then the invariants are checked.

    python -m bench.storm --events 10000 --servers 2000 --workers 4 --topics redis://127.0.0.1:6379/0

The emulator runs in this process on loopback with a generated seed (``--servers`` servers, each
with enough data disks that every event has its own volume), fast jobs and faults (about 30 % of
API calls fail transiently, 5 % of jobs fail). Each event is one JSON detach request with its own
``idempotency_key``; 10 % of them are published two or three times, and a handful of invalid
messages are published too. ``--workers`` ``ecs-detach worker`` processes consume the requests and
jobs topics; one of them is killed with SIGKILL at random moments and started again. When every
event has a result (or at ``--timeout``), ``check`` lists the violated invariants and the summary
table is printed; the exit status is 1 if any invariant is violated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from bench.common import make_seed
from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app
from emulator.faults import FaultConfig
from handler.core.followups import DetachResult
from handler.core.models import CloudEvent
from handler.local._serve import BackgroundServer
from handler.topics import Topic, open_topic, topic_url

TERMINAL = {"succeeded", "failed", "timed_out", "already_detached", "rejected", "dry_run"}
INVALID_MESSAGES = [
    "not json at all",
    "{}",
    json.dumps({"server_id": "not-a-uuid", "volume_id": "nope"}),
    json.dumps({"volume_id": "2c4d6e8f-0000-4000-8000-000000000001"}),
    "[1, 2, 3]",
]


@dataclass(frozen=True)
class StormConfig:
    """What the storm does."""

    events: int = 10_000
    servers: int = 2_000
    workers: int = 4
    topics: str = ""
    seed: int = 7
    concurrency: int = 8
    duplicate_rate: float = 0.10
    error_rate: float = 0.30
    job_failure_rate: float = 0.05
    kill_every_s: tuple[float, float] = (3.0, 10.0)
    max_kills: int | None = None
    timeout_s: float = 1800.0


@dataclass(frozen=True)
class Event:
    """One detach event: its key and the volume it alone targets."""

    key: str
    server_id: str
    volume_id: str

    def body(self) -> str:
        return json.dumps(
            {"server_id": self.server_id, "volume_id": self.volume_id, "idempotency_key": self.key}
        )


@dataclass
class StormReport:
    """What happened, for ``check`` and ``summary``."""

    config: StormConfig
    events: list[Event]
    published: int = 0
    duplicates_published: int = 0
    invalid_published: int = 0
    results: dict[str, list[str]] = field(default_factory=dict)  # key -> outcomes received
    latencies: list[float] = field(default_factory=list)
    unknown_results: int = 0
    redelivered_results: int = 0  # the same result event (same CloudEvent id) delivered again
    dead_letters: list[str] = field(default_factory=list)
    detaches: list[dict[str, Any]] = field(default_factory=list)
    call_summary: dict[str, Any] = field(default_factory=dict)
    api_calls: int = 0
    faulted_calls: int = 0
    pending_requests: int = -1
    pending_jobs: int = -1
    kills: int = 0
    redeliveries: int = 0
    wall_s: float = 0.0
    timed_out: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with the topic prefix ``prefix`` (kept before it if the URL already has one)."""
    location, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    old = next((v for k, v in pairs if k == "topic" and v), None)
    rest = [(k, v) for k, v in pairs if k != "topic"]
    name = f"{old}-{prefix}" if old else prefix
    return f"{location}?{urlencode([*rest, ('topic', name)])}"


def build_seed(config: StormConfig, rng: random.Random) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A seed of ``servers`` servers with enough data disks for one volume per event; the
    (server, volume) pairs in a shuffled order."""
    per_server = max(1, -(-config.events // config.servers))
    seed, pairs = make_seed(config.servers, per_server, seed=rng.getrandbits(32))
    rng.shuffle(pairs)
    return seed, pairs


def build_messages(
    config: StormConfig, rng: random.Random, pairs: list[tuple[str, str]]
) -> tuple[list[Event], list[str], int]:
    """The events, the message bodies to publish (duplicates and invalid ones mixed in, shuffled),
    and how many extra copies were added."""
    events = [
        Event(f"storm-{i}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}", s, v)
        for i, (s, v) in enumerate(pairs[: config.events])
    ]
    bodies = [event.body() for event in events]
    extra = 0
    for event in rng.sample(events, round(len(events) * config.duplicate_rate)):
        copies = rng.choice((1, 1, 2))
        bodies.extend([event.body()] * copies)
        extra += copies
    bodies.extend(INVALID_MESSAGES)
    rng.shuffle(bodies)
    return events, bodies, extra


def fault_config(config: StormConfig) -> FaultConfig:
    """About ``error_rate`` of the calls fail transiently; ``job_failure_rate`` of the jobs fail."""
    e = config.error_rate
    return FaultConfig.model_validate(
        {
            "seed": config.seed,
            "errors": [
                {"rate": e * 0.35, "status": 429, "retry_after_s": 1},
                {"rate": e * 0.30, "status": 503, "code": "APIG.0202"},
                {"rate": e * 0.10, "status": 500, "code": "APIG.0201"},
                {"rate": e * 0.10, "status": 503, "code": "APIG.0201", "after_commit": True},
            ],
            "hangs": [{"rate": e * 0.15, "seconds": 1.0}],
            "job_failure": {"rate": config.job_failure_rate},
        }
    )


def worker_env(emulator_url: str, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "ECS_DETACH_"))}
    env.update(
        {
            "ECS_DETACH_ECS_ENDPOINT": emulator_url,
            "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
            "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
            "ECS_DETACH_STORE": store,
            "ECS_DETACH_FIRST_POLL_S": "0.3",
            "ECS_DETACH_MIN_POLL_DELAY_S": "0.2",
            "ECS_DETACH_MAX_POLL_DELAY_S": "1",
            "ECS_DETACH_POLL_FACTOR": "0.5",
            "ECS_DETACH_BUSY_RETRY_S": "0.5",
            "ECS_DETACH_QUEUE_CHECK_S": "0.5",
            "ECS_DETACH_HTTP_TIMEOUT_S": "3",
            "ECS_DETACH_CONNECT_TIMEOUT_S": "2",
            "ECS_DETACH_VISIBILITY_TIMEOUT_S": "10",
            "ECS_DETACH_INVOCATION_TIMEOUT_S": "10",
            "ECS_DETACH_MAX_DELIVERIES": "25",
            "ECS_DETACH_POLL_TIMEOUT_S": "600",
            # Generous: the storm is about faults and crashes, not the blast-radius limit.
            "ECS_DETACH_MAX_DETACHES_PER_WINDOW": "1000",
            "ECS_DETACH_DETACH_WINDOW_S": "1",
            "ECS_DETACH_BREAKER_FAILURES": "1000",
            "ECS_DETACH_BREAKER_WINDOW_S": "1",
            "ECS_DETACH_LOG_LEVEL": os.environ.get("STORM_LOG_LEVEL", "WARNING"),
        }
    )
    return env


class Workers:
    """``count`` worker processes; ``kill_one`` SIGKILLs one and starts it again."""

    def __init__(self, count: int, base: str, env: dict[str, str], cwd: Path, concurrency: int) -> None:
        self._base, self._env, self._cwd, self._concurrency = base, env, cwd, concurrency
        self._logs = cwd / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._started = 0
        self.procs: list[tuple[subprocess.Popen[bytes], int]] = [self._start() for _ in range(count)]
        self.redeliveries: dict[int, int] = {}

    def _start(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        self._started += 1
        args = [
            sys.executable,
            *("-m", "handler.local.cli", "worker"),
            *("--jobs", topic_url(self._base, "jobs"), "--results", topic_url(self._base, "results")),
            *("--requests", topic_url(self._base, "requests")),
            *("--concurrency", str(self._concurrency), "--health-port", str(port)),
        ]
        log = (self._logs / f"worker-{self._started}.log").open("wb")
        proc = subprocess.Popen(args, env=self._env, cwd=self._cwd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 (our own command line)
        log.close()
        return proc, port

    def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.procs))
        proc, port = self.procs[index]
        self.scrape_one(proc, port)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[index] = self._start()

    def scrape_one(self, proc: subprocess.Popen[bytes], port: int) -> None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
        except httpx.HTTPError:
            return
        total = 0.0
        for line in text.splitlines():
            if line.startswith("ecs_detach_redeliveries_total"):
                total += float(line.rsplit(" ", 1)[1])
        self.redeliveries[proc.pid] = int(total)

    def scrape(self) -> None:
        for proc, port in self.procs:
            self.scrape_one(proc, port)

    def stop(self) -> None:
        self.scrape()
        for proc, _ in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drain(topic: Topic, wait: float = 0.2) -> list[str]:
    bodies: list[str] = []
    while True:
        batch = topic.receive(100, wait=wait)
        if not batch:
            return bodies
        for delivery in batch:
            bodies.append(delivery.body)
            topic.ack(delivery)


def run_storm(config: StormConfig, workdir: Path) -> StormReport:  # noqa: PLR0912, PLR0915
    """Run the whole storm in ``workdir``; the report of what happened."""
    rng = random.Random(config.seed)  # noqa: S311 (a repeatable storm, not crypto)
    seed, pairs = build_seed(config, rng)
    events, bodies, extra = build_messages(config, rng, pairs)
    report = StormReport(config, events, duplicates_published=extra, invalid_published=len(INVALID_MESSAGES))
    topics = config.topics or f"sqlite:///{workdir / 'topics.db'}"
    run = f"storm{uuid.uuid4().hex[:8]}"
    base = with_prefix(topics, run)
    if base.startswith(("redis://", "rediss://")):
        # The run's own key prefix: the event keys repeat from run to run (same seed), and a
        # store shared with an earlier run would answer every event as a duplicate.
        store = f"{base.partition('?')[0]}?prefix={run}"
    else:
        store = f"sqlite:///{workdir / 'store.db'}"
    emulator_config = EmulatorConfig(
        job_init_s=0.05,
        job_duration_s={"kind": "uniform", "min": 0.2, "max": 1.0},
        faults=fault_config(config),
    )
    backend = EcsBackend.from_seed(seed, credentials=[DEMO_CREDENTIAL], config=emulator_config)
    open_ = {"visibility_timeout": 10.0, "max_deliveries": 25}
    requests = open_topic(topic_url(base, "requests"), default_name="requests", **open_)  # type: ignore[arg-type]
    results = open_topic(topic_url(base, "results"), default_name="results", **open_)  # type: ignore[arg-type]
    jobs = open_topic(topic_url(base, "jobs"), default_name="jobs", **open_)  # type: ignore[arg-type]
    dead = open_topic(topic_url(base, "requests") + ".dead", default_name="requests.dead")
    keys = {event.key for event in events}
    first_published: dict[str, float] = {}
    seen_events: set[str] = set()
    started = time.monotonic()
    with BackgroundServer(create_app(backend)) as server:
        workers = Workers(config.workers, base, worker_env(server.url, store), workdir, config.concurrency)
        try:

            def publish() -> None:
                for body in bodies:
                    key = _key(body)
                    if key is not None and key not in first_published:
                        first_published[key] = time.monotonic()
                    requests.publish(body)
                    report.published += 1

            publisher = threading.Thread(target=publish, name="storm-publisher", daemon=True)
            publisher.start()
            deadline = started + config.timeout_s
            next_kill = time.monotonic() + rng.uniform(*config.kill_every_s)
            next_scrape = time.monotonic() + 1
            while time.monotonic() < deadline:
                for delivery in results.receive(100, wait=0.5):
                    received = time.monotonic()
                    event = CloudEvent[DetachResult].model_validate_json(delivery.body)
                    result, key = event.data, event.data.idempotency_key or ""
                    if event.id in seen_events:  # the same result event again (CloudEvents: same id)
                        report.redelivered_results += 1
                    elif key in keys:
                        seen_events.add(event.id)
                        report.results.setdefault(key, []).append(result.outcome.value)
                        if key in first_published:
                            report.latencies.append(received - first_published[key])
                    else:
                        report.unknown_results += 1
                    results.ack(delivery)
                now = time.monotonic()
                if now >= next_kill and (config.max_kills is None or report.kills < config.max_kills):
                    workers.kill_one(rng)
                    report.kills += 1
                    next_kill = now + rng.uniform(*config.kill_every_s)
                if now >= next_scrape:
                    workers.scrape()
                    next_scrape = now + 1
                if not publisher.is_alive() and len(report.results) == len(keys):
                    break
            else:
                report.timed_out = True
            publisher.join(timeout=5)
            # Late duplicates and acknowledgements: let the topics settle, then look.
            settle = time.monotonic() + 15
            while time.monotonic() < settle:
                report.pending_requests, report.pending_jobs = requests.pending(), jobs.pending()
                if report.pending_requests == 0 and report.pending_jobs == 0:
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # a stray duplicate result would show up now
        finally:
            workers.stop()
        for body in _drain(results):
            event = CloudEvent[DetachResult].model_validate_json(body)
            result = event.data
            if event.id in seen_events:
                report.redelivered_results += 1
            elif result.idempotency_key in keys:
                seen_events.add(event.id)
                report.results.setdefault(result.idempotency_key, []).append(result.outcome.value)
            else:
                report.unknown_results += 1
        report.pending_requests, report.pending_jobs = requests.pending(), jobs.pending()
        report.redeliveries = sum(workers.redeliveries.values())
        ledger = httpx.get(f"{server.url}/_emulator/calls", timeout=60).json()
    report.wall_s = time.monotonic() - started
    report.dead_letters = _drain(dead)
    report.detaches = ledger["detaches"]
    report.call_summary = ledger["summary"]
    report.api_calls = len(ledger["calls"])
    report.faulted_calls = sum(1 for call in ledger["calls"] if call.get("fault"))
    for topic in (requests, results, jobs, dead):
        topic.close()
    return report


def _key(body: str) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get("idempotency_key") if isinstance(value, dict) else None


def check(report: StormReport) -> list[str]:
    """The violated invariants (empty: the storm passed)."""
    problems: list[str] = []
    if report.timed_out:
        problems.append(f"timed out after {report.config.timeout_s:.0f} s")
    missing = [e.key for e in report.events if e.key not in report.results]
    if missing:
        problems.append(f"{len(missing)} events have no result (e.g. {missing[:3]})")
    several = {k: v for k, v in report.results.items() if len(v) != 1}
    if several:
        problems.append(f"{len(several)} events have several results (e.g. {list(several.items())[:3]})")
    odd = {k: v for k, v in report.results.items() if not set(v) <= TERMINAL}
    if odd:
        problems.append(f"{len(odd)} events have a non-terminal result")
    if report.unknown_results:
        problems.append(f"{report.unknown_results} results of no event")
    per_volume = Counter(d["volume_id"] for d in report.detaches)
    twice = [v for v, n in per_volume.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} volumes detached more than once")
    for event in report.events:
        outcomes = set(report.results.get(event.key, []))
        detached = per_volume.get(event.volume_id, 0)
        if "succeeded" in outcomes and detached != 1:
            problems.append(f"event {event.key} succeeded but its volume was detached {detached} times")
        if outcomes & {"failed", "rejected"} and detached:
            problems.append(f"event {event.key} ended {sorted(outcomes)} but its volume was detached")
    targeted = {e.volume_id for e in report.events}
    stray = [v for v in per_volume if v not in targeted]
    if stray:
        problems.append(f"{len(stray)} volumes detached that no event asked for")
    if report.pending_requests != 0 or report.pending_jobs != 0:
        problems.append(f"left in flight: {report.pending_requests} requests, {report.pending_jobs} jobs")
    if sorted(report.dead_letters) != sorted(INVALID_MESSAGES):
        unexpected = [b for b in report.dead_letters if b not in INVALID_MESSAGES]
        problems.append(
            f"dead letters are not exactly the invalid messages: {len(report.dead_letters)} "
            f"dead, {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return problems


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(report: StormReport) -> str:
    """The summary table (markdown)."""
    outcomes = Counter(o for v in report.results.values() for o in v)
    valid_copies = len(report.events) + report.duplicates_published
    extra_detaches = len(report.detaches) - len({d["volume_id"] for d in report.detaches})
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())) or "none"
    faults = report.call_summary.get("faults", report.call_summary)
    rows = [
        ("events (distinct requests)", f"{len(report.events)}"),
        ("servers / workers", f"{report.config.servers} / {report.config.workers}"),
        (
            "messages published",
            f"{report.published} ({report.duplicates_published} duplicates, "
            f"{report.invalid_published} invalid)",
        ),
        ("detach calls that took effect", f"{len(report.detaches)}"),
        (
            "duplicates suppressed",
            f"{report.duplicates_published - max(0, extra_detaches)} of {report.duplicates_published}",
        ),
        ("API calls / with an injected fault", f"{report.api_calls} / {report.faulted_calls} (retried)"),
        ("redeliveries (workers' metrics)", f"{report.redeliveries}"),
        ("workers killed (SIGKILL) and restarted", f"{report.kills}"),
        ("results by kind", kinds),
        ("result events delivered again (same id)", f"{report.redelivered_results}"),
        ("dead letters", f"{len(report.dead_letters)}"),
        ("left in flight (requests / jobs)", f"{report.pending_requests} / {report.pending_jobs}"),
        ("wall time", f"{report.wall_s:.1f} s"),
        (
            "event to result p50 / p95",
            f"{_pct(report.latencies, 0.5):.2f} s / {_pct(report.latencies, 0.95):.2f} s",
        ),
        ("valid messages per event", f"{valid_copies / max(1, len(report.events)):.2f}"),
    ]
    if isinstance(faults, dict) and faults:
        rows.append(("ledger summary", json.dumps(faults, sort_keys=True)))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--servers", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker process")
    parser.add_argument("--topics", default="", help="broker or database URL (default: a fresh SQLite file)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    config = StormConfig(
        events=args.events,
        servers=args.servers,
        workers=args.workers,
        topics=args.topics,
        seed=args.seed,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
    )
    with tempfile.TemporaryDirectory(prefix="storm-") as tmp:
        report = run_storm(config, Path(tmp))
    print(summary(report))
    problems = check(report)
    for problem in problems:
        print(f"VIOLATED: {problem}")
    print("storm: all invariants hold" if not problems else f"storm: {len(problems)} invariants violated")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Push topics end to end over real HTTP: SMN (against the emulator) and an HTTP endpoint.

detach → jobs topic (SMN; delayed continuations wait in the delay topic and a forwarder sends
them when due) → SMN pushes each one, signed, to the webhook's POST /smn → the poll function →
results topic (SMN) → pushed to a subscriber. The webhook verifies every SMN signature.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.smn_models import CONFIRMED
from handler.cloud import SignerAuth
from handler.entry.runtime import Runtime, build_runtime
from handler.errors import ConfigError
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.local.worker import Worker, forwarders, poll_job
from handler.sources import parse_request
from handler.topics import TopicError, open_topic
from handler.topics.push import PushTopic
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import PID, WEB1, WEB1_DATA

TOPICS = f"/v2/{PID}/notifications/topics"


@dataclass
class Subscriber:
    """A loopback SMN subscriber that confirms its subscription and keeps every notification."""

    notifications: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = json.loads(await request.body())
            if body["type"] == "SubscriptionConfirmation":
                httpx.get(body["subscribe_url"])
            else:
                self.notifications.append(body)
            return Response()

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def _topic(api: httpx.Client, name: str, endpoint: str) -> str:
    """A topic with ``endpoint`` subscribed, once the subscription is confirmed (SMN pushes
    nothing to an unconfirmed one)."""
    urn: str = api.post(TOPICS, json={"name": name}).json()["topic_urn"]
    subscribed = api.post(
        f"{TOPICS}/{quote(urn, safe='')}/subscriptions", json={"protocol": "http", "endpoint": endpoint}
    )
    assert subscribed.status_code == 200, subscribed.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        subscriptions = httpx.get(f"{api.base_url}/_emulator/smn/subscriptions").json()["subscriptions"]
        if any(s["topic_urn"] == urn and s["status"] == CONFIRMED for s in subscriptions):
            return urn
        time.sleep(0.05)
    raise AssertionError(f"the subscription of {endpoint} to {name} was never confirmed")


@pytest.fixture
def smn_runtime(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Runtime, Subscriber, str]]:
    subscriber = Subscriber()
    with (
        BackgroundServer(subscriber.app()) as results_hook,
        httpx.Client(base_url=emulator.url, auth=SignerAuth(DEMO_CREDENTIALS)) as api,
    ):
        # The webhook must exist before the jobs topic subscribes it: build it on a placeholder
        # runtime's settings, then serve the real one.
        jobs_urn = f"urn:smn:ap-southeast-1:{PID}:jobs"
        results_urn = _topic(api, "results", f"{results_hook.url}/hook")
        # The emulator signs with its own self-signed certificate: trusted as the only anchor.
        emulator_cert = tmp_path / "emulator-smn.pem"
        emulator_cert.write_bytes(httpx.get(f"{emulator.url}/_smn/cert.pem", timeout=5).content)
        settings = fast_settings(
            tmp_path,
            emulator.url,
            jobs_topic=f"smn://{jobs_urn}",
            results_topic=f"smn://{results_urn}",
            delay_topic=f"sqlite:///{tmp_path}/delays.db",
            smn_confirm_hosts=["127.0.0.1"],
            smn_cert_hosts=["127.0.0.1"],
            smn_cert_ca_file=emulator_cert,
            smn_cert_subjects=["CN=ecs-detach emulator SMN"],
        )
        runtime = build_runtime(settings, DEMO_CREDENTIALS)
        app = runtime_app(runtime)
        with BackgroundServer(app) as webhook:
            assert _topic(api, "jobs", f"{webhook.url}/smn") == jobs_urn  # confirmed by the webhook
            workers = [w.start() for w in forwarders(runtime, budget_s=10)]
            try:
                yield runtime, subscriber, webhook.url
            finally:
                for worker in workers:
                    worker.stop()
                runtime.close()


def test_the_whole_flow_on_smn_topics(
    smn_runtime: tuple[Runtime, Subscriber, str], emulator: Emulator
) -> None:
    runtime, subscriber, webhook = smn_runtime
    assert isinstance(runtime.jobs, PushTopic)
    answer = httpx.post(webhook, json={"server_id": WEB1, "volume_id": WEB1_DATA}, headers=AUTH, timeout=10)
    assert answer.status_code == 202, answer.text
    (job_id,) = answer.json()["job_ids"]
    deadline = time.monotonic() + 20
    while not subscriber.notifications and time.monotonic() < deadline:
        time.sleep(0.1)
    (notification,) = subscriber.notifications
    event = json.loads(notification["message"])
    assert event["type"] == "ecs-detach.succeeded"
    assert event["data"]["job_id"] == job_id
    assert event["data"]["polls"] >= 1
    pushes = httpx.get(f"{emulator.url}/_emulator/smn/deliveries").json()["deliveries"]
    to_webhook = [p for p in pushes if p["endpoint"].endswith("/smn") and p["type"] == "Notification"]
    assert len(to_webhook) == event["data"]["polls"]  # each poll was one push of the job, verified
    assert all(p["status_code"] == 200 for p in to_webhook)


def test_a_forged_smn_push_is_refused(smn_runtime: tuple[Runtime, Subscriber, str]) -> None:
    _, _, webhook = smn_runtime
    forged = {
        "type": "Notification",
        "message": json.dumps({"type": "ecs-detach.accepted", "data": {}}),
        "message_id": "m1",
        "timestamp": "2024-01-15T08:30:00Z",
        "topic_urn": f"urn:smn:ap-southeast-1:{PID}:jobs",
        "signature": "Zm9yZ2Vk",
        "signature_version": "v1",
        "signing_cert_url": "http://127.0.0.1:1/cert.pem",
    }
    answer = httpx.post(
        f"{webhook}/smn", json=forged, headers={"X-SMN-MESSAGE-TYPE": "Notification"}, timeout=10
    )
    assert answer.status_code == 401


@dataclass
class CloudEventSink:
    """An HTTP endpoint receiving pushed CloudEvents; fails the first ``failures`` POSTs."""

    failures: int = 0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            if self.failures:
                self.failures -= 1
                return Response(status_code=503)
            self.events.append((request.headers["content-type"], json.loads(await request.body())))
            return Response(status_code=202)

        return Starlette(routes=[Route("/events", receive, methods=["POST"])])


def test_results_pushed_to_an_http_endpoint(tmp_path: Path, emulator: Emulator) -> None:
    sink = CloudEventSink(failures=1)  # the first push fails and is retried
    with BackgroundServer(sink.app()) as server:
        settings = fast_settings(tmp_path, emulator.url, results_topic=f"{server.url}/events")
        runtime = build_runtime(settings, DEMO_CREDENTIALS)
        worker = Worker(runtime.jobs, poll_job(runtime), wait_s=0.1).start()
        try:
            outcome = runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
            deadline = time.monotonic() + 15
            while not sink.events and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            worker.stop()
            runtime.close()
    ((content_type, event),) = sink.events
    assert content_type == "application/cloudevents+json"
    assert event["type"] == "ecs-detach.succeeded"
    assert event["data"]["job_id"] == outcome.job_id


def test_push_topic_urls_and_their_limits() -> None:
    with pytest.raises(TopicError, match="smn://urn:smn:REGION:PROJECT_ID:TOPIC"):
        open_topic("smn://not-an-urn", default_name="jobs")
    with pytest.raises(TopicError, match="needs cloud credentials"):
        open_topic(f"smn://urn:smn:eu-de:{PID}:jobs", default_name="jobs")
    topic = open_topic("http://127.0.0.1:9/events", default_name="results")
    try:
        with pytest.raises(TopicError, match="set ECS_DETACH_DELAY_TOPIC"):
            topic.publish("{}", delay=5)
        with pytest.raises(TopicError, match="consumed by its subscribers"):
            topic.receive()
        with pytest.raises(TopicError, match=re.escape("push to http://127.0.0.1:9/events failed")):
            topic.publish("{}")  # nothing listens: tried three times, then a clear error
    finally:
        topic.close()


@pytest.mark.slow
def test_the_flush_function_sends_each_continuation_to_smn_when_it_is_due(
    tmp_path: Path, emulator: Emulator
) -> None:
    """FunctionGraph has no forwarder process: a timer-triggered flush (``flush_handler``)
    sends the delayed messages as they fall due, and one whose send fails waits for the next."""
    subscriber = Subscriber()
    with (
        BackgroundServer(subscriber.app()) as hook,
        httpx.Client(base_url=emulator.url, auth=SignerAuth(DEMO_CREDENTIALS)) as api,
    ):
        urn = _topic(api, "jobs", f"{hook.url}/hook")
        delays = f"sqlite:///{tmp_path}/delays.db"
        unreachable = fast_settings(
            tmp_path / "a",
            emulator.url,
            jobs_topic=f"smn://{urn}",
            delay_topic=delays,
            smn_endpoint="http://127.0.0.1:9",
        )
        runtime = build_runtime(unreachable, DEMO_CREDENTIALS)
        try:
            runtime.jobs.publish('{"due": "soon"}', delay=0.2)
            runtime.jobs.publish('{"due": "later"}', delay=60)
            assert runtime.flush_delayed(1.0) == 0  # SMN does not answer: nothing is lost
            assert runtime.jobs.pending() == 2
        finally:
            runtime.close()
        settings = fast_settings(tmp_path / "b", emulator.url, jobs_topic=f"smn://{urn}", delay_topic=delays)
        runtime = build_runtime(settings, DEMO_CREDENTIALS)
        try:
            assert runtime.flush_delayed(2.5) == 1  # the due one goes out; the later one waits
            assert runtime.jobs.pending() == 1
        finally:
            runtime.close()
        deadline = time.monotonic() + 10
        while not subscriber.notifications and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [json.loads(n["message"]) for n in subscriber.notifications] == [{"due": "soon"}]


def test_flushing_without_a_push_topic_is_a_configuration_error(tmp_path: Path, emulator: Emulator) -> None:
    runtime = build_runtime(fast_settings(tmp_path, emulator.url), DEMO_CREDENTIALS)
    try:
        with pytest.raises(ConfigError, match="jobs topic on SMN"):
            runtime.flush_delayed(0.1)
    finally:
        runtime.close()

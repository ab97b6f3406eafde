"""The composition root: settings + credentials → cloud client, topics, and the two functions.

Every entrypoint (FunctionGraph, HTTP, worker, CLI) builds its ``Runtime`` here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

from handler.cloud import Credentials, EcsClient, EvsClient, SmnClient
from handler.errors import ConfigError
from handler.functions.detach import DetachFunction
from handler.guards.blast import BlastRadius
from handler.guards.idempotency import Guard
from handler.history import check_url
from handler.history.recorder import HistoryRecorder, acquire_recorder, release_recorder
from handler.settings import FunctionSettings
from handler.store import Store, open_store
from handler.support.extras import webhooks_missing
from handler.support.log import log_event
from handler.topics import Delivery, Topic, TopicError, open_topic
from handler.topics.push import PushTopic

if TYPE_CHECKING:
    from pydantic import SecretStr

    from handler.entry._chat import ChatCallbacks
    from handler.entry.webhooks import WebhookRouter
    from handler.functions.approvals import ApprovalDesk
    from handler.functions.jobs import JobsFunction
    from handler.functions.notify import NotifyFunction
    from handler.functions.poll import PollFunction
    from handler.history import HistoryStore
    from handler.settings import Settings


# A plain class, not a dataclass: it is made at import on every cold start, where a dataclass
# costs about 0.6 ms to create. Nothing compares or prints a runtime, so it has no __eq__ or
# __repr__; no __slots__, as the cached properties keep their values in its __dict__.
class Runtime:
    def __init__(
        self,
        *,
        settings: FunctionSettings,
        ecs: EcsClient,
        evs: EvsClient,
        smn: SmnClient,
        jobs: Topic,
        results: Topic,
        store: Store,
        detach: DetachFunction,
        blast: BlastRadius,
        history: HistoryRecorder | None = None,
        read_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self._read_settings = read_settings
        self.ecs = ecs
        self.evs = evs
        self.smn = smn
        self.jobs = jobs
        self.results = results
        self.store = store
        self.detach = detach
        self.blast = blast
        # Registered with log_event for the runtime's lifetime (None: ECS_DETACH_HISTORY=off).
        self.history = history
        self._closing: list[Callable[[], None]] = []

    @cached_property
    def full_settings(self) -> Settings:
        """The settings with the edges' too (webhook routes, notify, chat): ``settings`` itself
        when it holds them, else read on first use (FunctionGraph's cold start reads only the
        functions' settings; ``handler.settings``)."""
        from handler.settings import Settings  # noqa: PLC0415 (off the cold path)

        if isinstance(self.settings, Settings):
            return self.settings
        return Settings() if self._read_settings is None else self._read_settings()

    # The poll function and the jobs topic's, built on first use: a cold start that handles a
    # detach request never imports them. Both are stateless over the clients, the guard and the
    # blast radius they share with the detach function (two threads building one at once, on
    # Python 3.12+, build two equal ones: harmless).
    @cached_property
    def poll(self) -> PollFunction:
        from handler.functions.poll import PollFunction  # noqa: PLC0415

        settings = self.settings
        return PollFunction(
            self.ecs,
            self.results,
            source=settings.source,
            schedule=settings.poll_schedule(),
            guard=self.detach.guard,
            blast=self.blast,
        )

    @cached_property
    def jobs_function(self) -> JobsFunction:
        from handler.functions.jobs import JobsFunction  # noqa: PLC0415

        return JobsFunction(self.detach, self.poll)

    @cached_property
    def router(self) -> WebhookRouter:
        """The webhook routes; built on first use (a queue-triggered function never needs them)."""
        unserved = webhooks_missing()  # before the imports that would fail without the extra
        if unserved is not None:
            raise ConfigError(unserved)
        # Imported here so that a cold start of a queue-triggered function skips the adapters.
        from handler.entry._smn import SubscriptionConfirmer  # noqa: PLC0415
        from handler.entry.webhooks import WebhookRouter  # noqa: PLC0415
        from handler.security import WebhookAuthenticator  # noqa: PLC0415
        from handler.sources import MappingError, load_mappings  # noqa: PLC0415

        settings = self.full_settings
        try:
            mappings = load_mappings(settings.ticket_mappings)
        except MappingError as error:
            raise ConfigError(f"ECS_DETACH_TICKET_MAPPINGS: {error}") from None
        return WebhookRouter(
            self.detach,
            on_job=self.job_event,
            authenticator=WebhookAuthenticator(settings.webhook_auth()),
            labels=settings.alert_labels,
            mappings=mappings,
            max_body_bytes=settings.max_body_bytes,
            max_records=settings.max_records,
            max_cloud_calls=settings.max_cloud_calls,
            confirm_subscription=SubscriptionConfirmer(settings.smn_confirm_hosts),
            approvals=self.detach.approvals,
            chat=self.chat_callbacks(),
        )

    @cached_property
    def notify(self) -> NotifyFunction:
        """The notify function (``ECS_DETACH_NOTIFY_CHANNELS``); built on first use (it needs
        jinja2: the ``notify`` extra)."""
        from handler.functions.channels import SmnSender, WebhookSender  # noqa: PLC0415
        from handler.functions.notify import NotifyFunction, Templates  # noqa: PLC0415

        settings = self.full_settings
        timeout = httpx.Timeout(settings.http_timeout_s, connect=settings.connect_timeout_s)
        client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._closing.append(client.close)
        senders = [
            SmnSender(channel, self.smn) if channel.kind == "smn" else WebhookSender(channel, client)
            for channel in settings.notify_channels
        ]
        return NotifyFunction(
            senders,
            outcomes=settings.notify_outcomes,
            templates=Templates(settings.notify_templates),
            store=self.store,
            keep_s=settings.record_ttl_s,
            base_url=settings.approval_base_url,
        )

    def chat_callbacks(self) -> ChatCallbacks | None:
        """The chat buttons' way back, when approvals are on and a platform's secret is set."""
        from handler.entry._chat import ChatCallbacks  # noqa: PLC0415

        settings, desk = self.full_settings, self.detach.approvals
        if desk is None or (settings.slack_signing_secret is None and settings.feishu_encrypt_key is None):
            return None
        token = settings.feishu_verification_token
        return ChatCallbacks(
            desk,
            self.store,
            approvers=settings.chat_approvers,
            slack_signing_secret=_secret(settings.slack_signing_secret),
            feishu_encrypt_key=_secret(settings.feishu_encrypt_key),
            feishu_verification_token=token.get_secret_value() if token is not None else None,
        )

    def on_close(self, close: Callable[[], None]) -> None:
        """Run ``close`` when the runtime closes (what was built on it: the console)."""
        self._closing.append(close)

    def job_event(self, event: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """Handle one message of the jobs topic delivered by a push (FunctionGraph trigger, SMN,
        Knative): a job still running, or a queued request still waiting, goes back to the jobs
        topic with its delay. An invalid message raises ``InvalidInput``, so the platform's
        retry and dead-letter policy applies."""
        step = self.jobs_function(event)
        reply: dict[str, Any] = {"outcome": step.what, "job_id": step.job_id}
        if step.again is None:
            return {"status": "finished", **reply}
        self.jobs.publish(step.again, delay=step.delay_s)
        return {"status": "continued", **reply, "next_poll_in_s": step.delay_s}

    def delay_outboxes(self) -> list[tuple[PushTopic, Topic]]:
        """Each push topic (SMN, HTTP) that holds delayed messages until someone sends them,
        with the topic that holds them."""
        return [
            (t, t.outbox)
            for t in (self.jobs, self.results)
            if isinstance(t, PushTopic) and t.outbox is not None
        ]

    def flush_delayed(self, budget_s: float) -> int:
        """Send the delayed messages of the push topics (SMN, HTTP) as they fall due, for
        ``budget_s`` seconds; how many were sent. A message whose send fails goes back to the
        delay topic for another try (and to its dead letters after ``max_deliveries``)."""
        held = self.delay_outboxes()
        if not held:
            raise ConfigError("no push topic holds delayed messages: flushing is for a jobs topic on SMN")
        sent = 0
        deadline = time.monotonic() + budget_s
        while (left := deadline - time.monotonic()) > 0:
            for topic, outbox in held:
                for delivery in outbox.receive(10, wait=min(0.5, left) / len(held)):
                    sent += _forward(topic, outbox, delivery)
        return sent

    def close(self) -> None:
        for close in self._closing:
            close()
        self.ecs.close()
        self.evs.close()
        self.smn.close()
        self.jobs.close()
        self.results.close()
        self.store.close()
        if self.history is not None:
            release_recorder(self.history)
            self.history = None


def _secret(value: SecretStr | None) -> bytes | None:
    return value.get_secret_value().encode() if value is not None else None


def _forward(topic: PushTopic, outbox: Topic, delivery: Delivery) -> int:
    """Send one due message of ``outbox`` (then settle it); on failure, hand it back for a later try."""
    try:
        topic.forward(delivery)
    except Exception as error:  # any failure: the message waits for another try
        log_event(
            "flush.failed",
            level=logging.WARNING,
            topic=topic.name,
            message_id=delivery.message_id,
            error=f"{type(error).__name__}: {error}",
        )
        with contextlib.suppress(TopicError):  # the delay topic is down: the lease lapses instead
            outbox.nack(delivery, delay=1.0, reason=str(error))
        return 0
    return 1


def build_runtime(
    settings: FunctionSettings,
    credentials: Credentials,
    *,
    read_settings: Callable[[], Settings] | None = None,
) -> Runtime:
    """The runtime ``settings`` describe; ``read_settings`` reads the edges' settings too when
    a webhook, notify or chat event first needs them and ``settings`` does not hold them
    (default: ``Settings()``, from the environment)."""
    url = settings.ecs_url()
    if url is None:
        raise ConfigError(
            "no ECS endpoint: set ECS_DETACH_REGION (and ECS_DETACH_CLOUD) or ECS_DETACH_ECS_ENDPOINT"
        )
    history_url = settings.history_url()
    # A history URL that can never work fails now, before anything is opened (ConfigError).
    open_history = None if history_url is None else check_url(history_url)
    timeout = httpx.Timeout(settings.http_timeout_s, connect=settings.connect_timeout_s)
    ecs = EcsClient(url, credentials, timeout=timeout)
    evs = EvsClient(settings.evs_url() or url, credentials, timeout=timeout)
    smn = SmnClient(settings.smn_url() or url, credentials, timeout=timeout)
    topics = {
        name: open_topic(
            topic,
            default_name=name,
            visibility_timeout=settings.visibility_timeout_s,
            max_deliveries=settings.max_deliveries,
            smn=smn,
            delay_url=settings.delay_topic,
        )
        for name, topic in (("jobs", settings.jobs_topic), ("results", settings.results_topic))
    }
    jobs, results = topics["jobs"], topics["results"]
    store = open_store(settings.store)
    blast = blast_radius(settings, store)
    detach = build_detach(
        settings, credentials, ecs=ecs, evs=evs, jobs=jobs, results=results, store=store, blast=blast
    )
    history = _recorder(settings, history_url, open_history) if history_url and open_history else None
    return Runtime(
        settings=settings,
        ecs=ecs,
        evs=evs,
        smn=smn,
        jobs=jobs,
        results=results,
        store=store,
        detach=detach,
        blast=blast,
        history=history,
        read_settings=read_settings,
    )


def _recorder(
    settings: FunctionSettings, url: str, open_history: Callable[[], HistoryStore]
) -> HistoryRecorder:
    """The history's recorder, registered with ``log_event`` (shared with any other runtime of
    this process that names the same history). A database that cannot be reached does not stop
    the runtime: the recorder reports it and keeps trying (docs/history.md)."""
    return acquire_recorder(
        url,
        lambda: HistoryRecorder(
            open_history,
            retention_s=settings.history_retention_days * 86400.0,
            wait_s=settings.history_wait_s,
        ),
    )


def build_detach(
    settings: FunctionSettings,
    credentials: Credentials,
    *,
    ecs: EcsClient,
    evs: EvsClient,
    jobs: Topic,
    results: Topic,
    store: Store,
    blast: BlastRadius,
) -> DetachFunction:
    """The detach function, every safety piece wired from ``settings``: the one place it is built
    (the poll function, ``Runtime.poll``, shares its guard and ``blast``)."""
    guard = Guard(
        store,
        in_progress_ttl_s=settings.invocation_timeout_s,
        record_ttl_s=settings.record_ttl_s,
        lock_ttl_s=settings.poll_timeout_s + settings.invocation_timeout_s,
    )
    schedule = settings.poll_schedule()
    approvals = build_desk(settings, store=store, jobs=jobs, results=results)
    return DetachFunction(
        ecs,
        evs,
        jobs,
        results,
        policy=settings.policy(),
        guard=guard,
        blast=blast,
        default_project_id=credentials.project_id,
        source=settings.source,
        schedule=schedule,
        poll_timeout_s=settings.poll_timeout_s,
        busy_retry_s=settings.busy_retry_s,
        queue_timeout_s=settings.queue_timeout_s,
        queue_check_s=settings.queue_check_s,
        dry_run=settings.dry_run,
        approvals=approvals,
    )


def blast_radius(settings: FunctionSettings, store: Store) -> BlastRadius:
    """The blast radius and circuit breaker the settings describe, kept in ``store``."""
    return BlastRadius(
        store,
        max_per_window=settings.max_detaches_per_window,
        window_s=settings.detach_window_s,
        breaker_failures=settings.breaker_failures,
        breaker_window_s=settings.breaker_window_s,
    )


def build_desk(
    settings: FunctionSettings, *, store: Store, jobs: Topic, results: Topic
) -> ApprovalDesk | None:
    """The approval desk, when the approval policy may ask for approvals."""
    policy = settings.approval_policy()
    if not policy.enabled:
        return None
    # Imported here so that a cold start of a function that never asks for approvals skips them.
    from handler.functions.approvals import ApprovalDesk  # noqa: PLC0415
    from handler.store.approvals import open_book  # noqa: PLC0415

    secret = settings.approval_link_secret
    return ApprovalDesk(
        policy,
        open_book(store),
        store,
        jobs,
        results,
        source=settings.source,
        keep_s=settings.record_ttl_s,
        link_secret=secret.get_secret_value().encode() if secret is not None else None,
        base_url=settings.approval_base_url,
    )


class DeskHandle(NamedTuple):
    """The approval desk on its own (``ecs-detach approvals``): the store and topics it needs,
    without the cloud clients of the functions."""

    desk: ApprovalDesk
    store: Store
    topics: list[Topic]
    smn: SmnClient | None

    def close(self) -> None:
        for topic in self.topics:
            topic.close()
        self.store.close()
        if self.smn is not None:
            self.smn.close()


def open_desk(settings: FunctionSettings, credentials: Credentials | None) -> DeskHandle:
    """The deployment's approval desk (``ConfigError`` when approvals are off); an SMN topic
    needs the cloud credentials, the others none."""
    smn_url = settings.smn_url()
    smn = SmnClient(smn_url, credentials) if credentials is not None and smn_url else None
    topics = [
        open_topic(
            url,
            default_name=name,
            visibility_timeout=settings.visibility_timeout_s,
            max_deliveries=settings.max_deliveries,
            smn=smn,
            delay_url=settings.delay_topic,
        )
        for name, url in (("jobs", settings.jobs_topic), ("results", settings.results_topic))
    ]
    store = open_store(settings.store)
    desk = build_desk(settings, store=store, jobs=topics[0], results=topics[1])
    if desk is None:
        for topic in topics:
            topic.close()
        store.close()
        raise ConfigError("approvals are off: set ECS_DETACH_APPROVAL_MODE to always or rules")
    return DeskHandle(desk, store, topics, smn)

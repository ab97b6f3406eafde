"""FunctionGraph entrypoints: ``handler`` (detach), ``poll_handler`` (poll), ``flush_handler``
(delayed continuations to SMN, on a timer), ``relay_handler`` (the outbox relay, on a timer),
``notify_handler`` and ``history_handler`` (on the results topic) and the initializer ``init``.

The package's ``index.py`` re-exports them: configure the functions as ``index.handler``,
``index.poll_handler``, ``index.flush_handler``, ``index.relay_handler``,
``index.notify_handler``, ``index.history_handler`` and ``index.init``.
The runtime is built once per instance and reused across invocations. Credentials: the
function's agency (temporary AK/SK/token from the context) win over ``HUAWEICLOUD_SDK_*``; they
rotate, so each invocation refreshes them.
Settings come from the context's user data (``context.getUserData``: where FunctionGraph serves
the encrypted ones) and the environment. No web framework is imported here.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

# These functions use no pydantic plugin. Without this, building the first model scans every
# installed distribution for plugin entry points: about 15 ms of each cold start. An operator
# who wants plugins (e.g. for tracing) sets PYDANTIC_DISABLE_PLUGINS to "" in the function.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from handler.cloud import Credentials, time_budget
from handler.core.outcomes import DetachStatus, QueueAction
from handler.core.validation import FieldError, InvalidInput, MalformedInput, load_object
from handler.entry._problems import invalid_problem, too_many_records
from handler.entry.runtime import Runtime, build_runtime
from handler.errors import ConfigError, EcsDetachError
from handler.functions.batch import process
from handler.settings import CloudCredentials, FunctionSettings
from handler.sources._base import Parsed
from handler.sources.triggers import ApigRequest, apig_response, detect_trigger, dms_messages
from handler.support.env_settings import EnvSettings, environment_values
from handler.support.extras import describe, missing
from handler.support.log import configure, log_event

if TYPE_CHECKING:
    from handler.settings import Settings

# FunctionGraph's context object: read through getattr (getSecurityAccessKey, getProjectID, …),
# since its methods differ between runtimes and local test harnesses.
Context = object


SettingsT = TypeVar("SettingsT", bound=EnvSettings)
P = ParamSpec("P")
R = TypeVar("R")

SAFETY_MARGIN_S = 2.0  # kept back from the time budget to publish and return
_lock = threading.Lock()
_runtime: Runtime | None = None
_project_id: str | None = None  # from the environment, read with the runtime
# The package's entry file (index.py) pauses the cyclic garbage collector before it imports this
# module: what a new instance's imports, runtime and first event create mostly lives as long as
# the instance, and the collections that would scan it on the way cost about 15 ms of each cold
# start (docs/performance.md). The runtime's build freezes what it holds (``_runtime_for``); when
# the first invocation ends, whatever its outcome, what it made is frozen too and the collector
# resumes: from then on it only ever scans what later invocations make.
_COLLECTOR_PAUSED = not gc.isenabled()


def entrypoint(function: Callable[P, R]) -> Callable[P, R]:
    """A FunctionGraph handler (or the initializer): ends the cold start's pause of the garbage
    collector when the instance's first invocation ends (above)."""

    @functools.wraps(function)
    def invoke(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            if _COLLECTOR_PAUSED and not gc.isenabled():
                gc.freeze()
                gc.enable()

    return invoke


def _agency_credentials(context: Context | None, project_id: str | None) -> Credentials | None:
    """The function agency's temporary credentials from the context, if it carries them."""
    if context is None:
        return None
    ak = _call(context, "getSecurityAccessKey")
    sk = _call(context, "getSecuritySecretKey")
    if not (ak and sk):
        return None
    return Credentials.model_validate(
        {
            "access_key": ak,
            "secret_key": sk,
            "security_token": _call(context, "getSecurityToken") or None,
            "project_id": project_id or _call(context, "getProjectID") or None,
        }
    )


def _call(context: Context, method: str, *arguments: str) -> str:
    getter = getattr(context, method, None)
    value = getter(*arguments) if callable(getter) else None
    return value if isinstance(value, str) else ""


def read_settings(settings_cls: type[SettingsT], context: Context | None) -> SettingsT:
    """``settings_cls`` from the context's user data, else the environment. The user data is
    the function's environment variables as the context serves them (``getUserData(key)``):
    FunctionGraph documents the encrypted ones (``encrypted_user_data``) there, and they need
    not be in ``os.environ``. Read like the environment (prefix, JSON lists); an empty value
    is not set."""
    if context is None:
        return settings_cls()
    from_context = environment_values(settings_cls, lambda key: _call(context, "getUserData", key) or None)
    return settings_cls(**from_context)


def _runtime_for(context: Context | None) -> Runtime:
    """The instance's runtime, built on first use. The environment is read then, once; later
    invocations only swap in the agency's credentials, which rotate."""
    global _runtime, _project_id  # one runtime per function instance, by design
    with _lock:
        if _runtime is not None:
            fresh = _agency_credentials(context, _project_id)
            if fresh is not None:
                for client in (_runtime.ecs, _runtime.evs, _runtime.smn):
                    client.use_credentials(fresh)
            return _runtime
        configured = read_settings(CloudCredentials, context)
        project_id = configured.project_id or os.environ.get("RUNTIME_PROJECT_ID")
        credentials = _agency_credentials(context, project_id)
        if credentials is None:
            from_env = configured.credentials()
            if from_env is None:
                raise ConfigError(
                    "no credentials: give the function an agency, or set HUAWEICLOUD_SDK_AK and "
                    "HUAWEICLOUD_SDK_SK"
                )
            credentials = from_env.model_copy(update={"project_id": project_id})
        # The functions' settings now; the edges' (webhook routes, notify, chat) when an event
        # first needs them (``handler.settings``): a cold start skips their fields and models.
        settings = read_settings(FunctionSettings, context)
        configure(settings.log_level)
        _check_backends(settings)
        full = functools.partial(_read_full_settings, context)
        _runtime, _project_id = build_runtime(settings, credentials, read_settings=full), project_id
        if gc.get_freeze_count() == 0:
            # What the instance holds now (the modules, classes and models imported, the settings,
            # the runtime) lives as long as it does: moved out of the cyclic collector's way, so
            # that its full collections, and the interpreter's at exit, skip those objects
            # (docs/performance.md: a cold process's exit, 55-60 ms, becomes about 10). Once per
            # process, so whatever a later build leaves behind is collected as usual.
            gc.freeze()
        return _runtime


def _read_full_settings(context: Context | None) -> Settings:
    from handler.settings import Settings  # noqa: PLC0415 (off the cold path)

    return read_settings(Settings, context)


def _check_backends(settings: FunctionSettings) -> None:
    """Refuse what cannot work in a function, naming the setting: a relative SQLite path (the
    code folder is read-only, only /tmp is writable), or a URL whose client library is not in
    the package (say which extra to build it with, rather than a ModuleNotFoundError later)."""
    topics = [settings.jobs_topic, settings.results_topic]
    urls = [
        ("ECS_DETACH_JOBS_TOPIC", settings.jobs_topic),
        ("ECS_DETACH_RESULTS_TOPIC", settings.results_topic),
        ("ECS_DETACH_STORE", settings.store),
    ]
    history = settings.history_url()
    if history is not None:
        urls.append(("ECS_DETACH_HISTORY", history))
    if any(url.startswith(("smn://", "http://", "https://")) for url in topics):
        urls.append(("ECS_DETACH_DELAY_TOPIC", settings.delay_topic))  # only push topics use it
    relative = [
        name for name, url in urls if url.startswith("sqlite:///") and not url.startswith("sqlite:////")
    ]
    if relative:
        raise ConfigError(
            f"{', '.join(relative)}: a relative SQLite path (e.g. the default sqlite:///.ecs-detach/…) "
            "cannot be written in FunctionGraph, whose code folder is read-only: use sqlite:////tmp/… "
            "(per instance), a shared redis:// store and broker topics, and a postgresql:// history "
            "or ECS_DETACH_HISTORY=off"
        )
    unmet = missing(urls)
    if unmet:
        raise ConfigError(describe(unmet))


@entrypoint
def init(context: Context) -> None:
    """FunctionGraph initializer: build clients before the first event arrives."""
    _runtime_for(context)


class RetryLater(EcsDetachError):
    """Some records of a queue-triggered batch must be retried: raising lets the platform
    redeliver the batch (records already accepted meet Ecs.0603 or Ecs.0111 the second time)."""


def _budget_s(context: Context | None, runtime: Runtime) -> float:
    """What this invocation may spend on cloud calls: the platform's remaining time less a
    margin to publish and return, else the configured function timeout."""
    getter = getattr(context, "getRemainingTimeInMilliSeconds", None)
    remaining_ms = getter() if callable(getter) else None
    if isinstance(remaining_ms, (int, float)):
        return max(remaining_ms / 1000 - SAFETY_MARGIN_S, 0.0)
    return runtime.settings.invocation_timeout_s - SAFETY_MARGIN_S


@entrypoint
def handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Detach: any trigger (APIG, SMN, DMS Kafka/RabbitMQ, Timer) or a direct invocation with a
    detach request or an ``ecs-detach.requested`` CloudEvent; see ``handler.sources.triggers``."""
    runtime = _runtime_for(context)
    with time_budget(_budget_s(context, runtime)):
        return handle_event(runtime, event)


def handle_event(runtime: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    """What ``handler`` does once the runtime is there (also used by ``ecs-detach invoke``)."""
    try:
        trigger = detect_trigger(event)
    except InvalidInput as error:
        log_event("detach.invalid", level=logging.WARNING, reason=str(error))
        status = 400 if isinstance(error, MalformedInput) else 422
        return {"status_code": status, **invalid_problem(error, status)}
    if isinstance(trigger, ApigRequest):
        answer = runtime.router.handle(trigger)
        headers = {"Content-Type": answer.content_type, **answer.headers}
        if answer.html is not None:
            return {
                "statusCode": answer.status,
                "headers": headers,
                "body": answer.html,
                "isBase64Encoded": False,
            }
        return apig_response(answer.status, answer.body, headers)
    refused = _too_many_records(trigger, runtime.settings.max_records)
    if refused is not None:
        return refused
    report = process(trigger, runtime.detach, max_cloud_calls=runtime.settings.max_cloud_calls)
    if report.disposition() is QueueAction.REQUEUE:
        retries = report.count_of(DetachStatus.RETRY)
        raise RetryLater(f"{retries} of {len(report.records)} record(s) must be retried later")
    return {"status_code": report.http_status(), **report.as_dict()}


class TooManyRecords(EcsDetachError):
    """A queue-triggered batch holds more records than ``ECS_DETACH_MAX_RECORDS``: raising lets
    the platform retry, then dead-letter it, instead of dropping its messages."""


def _too_many_records(trigger: Parsed, limit: int) -> dict[str, Any] | None:
    """413, before any cloud call, for an event with more records than ``limit``."""
    if len(trigger.records) <= limit:
        return None
    refused = too_many_records(len(trigger.records), limit)
    log_event(
        "detach.too_many_records", level=logging.WARNING, source=trigger.source, detail=refused["detail"]
    )
    if trigger.source.startswith("dms"):
        raise TooManyRecords(refused["detail"])
    return {"status_code": 413, **refused}


@entrypoint
def poll_handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Poll: the event is a jobs-topic CloudEvent (``ecs-detach.accepted`` or
    ``ecs-detach.queued``). A running job (or a request still queued) is re-published to the
    jobs topic with a delay; the function returns at once instead of sleeping."""
    runtime = _runtime_for(context)
    with time_budget(_budget_s(context, runtime)):
        return _job_event(runtime, event)


@entrypoint
def notify_handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Notify: a results-topic trigger (SMN, or DMS RabbitMQ / Kafka), or one result event; each
    event goes to the channels of ``ECS_DETACH_NOTIFY_CHANNELS`` that take its outcome. A channel
    that did not take it raises, so the platform retries the batch (the channels that took it are
    not sent it again) and then dead-letters it. Needs the ``notify`` extra (jinja2)."""
    runtime = _runtime_for(context)
    with time_budget(_budget_s(context, runtime)):
        records = event.get("record")
        if isinstance(records, list):
            messages: list[object] = [load_object(r["smn"]["message"]) for r in records]
        elif isinstance(event.get("records"), list):
            messages = [message for _, message in dms_messages(event)]
        else:
            messages = [event]
        reports = []
        for message in messages:
            if isinstance(message, InvalidInput):
                raise message
            if not isinstance(message, (dict, str, bytes)):
                raise InvalidInput("invalid result event", [FieldError("message", "expected a JSON object")])
            report = runtime.notify(message)
            reports.append({"outcome": report.outcome, "sent": list(report.sent)})
        return {"records": reports}


@entrypoint
def history_handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """History recorder: a results-topic trigger (SMN, or DMS RabbitMQ / Kafka) whose result
    events are recorded in ``ECS_DETACH_HISTORY`` (PostgreSQL), for deployments whose detach and
    poll functions cannot reach the database (docs/history.md). It builds no runtime (no cloud
    credentials, topics or store): ``handler.history.results.handler``, imported on first use."""
    from handler.history.results import handler as record  # noqa: PLC0415 (only this function needs it)

    return record(event, context)


@entrypoint
def flush_handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Timer trigger, for a jobs topic on SMN: SMN cannot deliver later, so the poll function's
    delayed continuations wait in ``ECS_DETACH_DELAY_TOPIC`` (a shared broker: Redis or
    RabbitMQ) and this sends each to SMN as it falls due, until the invocation's time is spent.
    A timer every minute with a one-minute timeout keeps one flush always running."""
    runtime = _runtime_for(context)
    budget = _budget_s(context, runtime)
    return {"forwarded": runtime.flush_delayed(budget), "budget_s": round(budget, 3)}


@entrypoint
def relay_handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Timer trigger: the outbox relay (``handler.functions.relay``). An accepted detach whose
    event never reached the jobs topic (its publish failed and nobody retried, or its instance
    died before publishing) is published now. A publish that fails leaves the record for the
    next tick; a store that does not answer raises, so the invocation counts as failed."""
    from handler.functions.relay import Relay  # noqa: PLC0415 (only this function needs it)

    runtime = _runtime_for(context)
    with time_budget(_budget_s(context, runtime)):
        report = Relay(runtime.detach, older_than_s=runtime.settings.relay_after_s).sweep()
    return {"published": report.published, "failed": report.failed, "ended": report.ended}


def _job_event(runtime: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    """The event itself, or a queue trigger whose messages are the events: SMN (jobs topic on
    SMN), or DMS RabbitMQ / Kafka (jobs topic on DMS). An invalid message raises, so the
    platform's retry and dead-letter policy applies to the batch."""
    records = event.get("record")
    if isinstance(records, list):
        return {"records": [runtime.job_event(load_object(r["smn"]["message"])) for r in records]}
    if isinstance(event.get("records"), list):
        polled = []
        for _, message in dms_messages(event):
            if isinstance(message, InvalidInput):
                raise message
            polled.append(runtime.job_event(load_object(message)))
        return {"records": polled}
    return runtime.job_event(event)

"""The functions as functions-framework targets, for containers (Knative, Cloud Run style, Kubernetes).

    functions-framework --source handler/local/container.py --target webhook --port 8080
    functions-framework --source handler/local/container.py --target poll --port 8080

Configuration and credentials come from the environment (``ECS_DETACH_*``,
``HUAWEICLOUD_SDK_*``). ``webhook`` serves the routes and answers of ``WebhookRouter``, and
the web console under ``/console`` (``handler/local/console``). Both targets answer
``GET /healthz`` (the image's HEALTHCHECK, the Knative readiness probes) once the runtime is
built.
``poll`` takes the jobs topic as pushed CloudEvents (a Knative Trigger on the broker): with the
jobs topic an HTTP push topic to the broker, delayed continuations wait in the delay topic and
the worker's forwarder sends them. Without a broker, run the poll worker beside the webhook
(``ecs-detach up`` or the worker command) on the same jobs topic.
"""

from __future__ import annotations

import json
import logging
import threading

import functions_framework
from flask import Request, Response
from gunicorn.http.errors import ParseException  # type: ignore[import-untyped]

from handler.core.validation import InvalidInput
from handler.entry._problems import invalid_problem, problem
from handler.entry.runtime import Runtime, build_runtime
from handler.entry.webhooks import PROBLEM_JSON, WebRequest
from handler.errors import ConfigError
from handler.local.console import Console, ConsoleRequest
from handler.local.console.app import PREFIX
from handler.settings import CloudCredentials, Settings
from handler.sources.cloudevents_http import cloudevent_object
from handler.support.log import configure, log_event

_lock = threading.Lock()
_runtime: Runtime | None = None
_console: Console | None = None


def _runtime_once() -> Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per container instance, by design
    with _lock:
        if _runtime is None:
            settings = Settings()
            configure(settings.log_level)
            credentials = CloudCredentials().credentials()
            if credentials is None:
                raise ConfigError("set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK")
            _runtime = build_runtime(settings, credentials)
        return _runtime


def _body_cut_short(path: str, timeout_s: float) -> Response:
    """The body ended before its Content-Length: the server cut it at the body deadline
    (``container_server``), or the client went away and nobody reads this."""
    log_event("http.body_timeout", level=logging.DEBUG, path=path, timeout_s=timeout_s)
    detail = f"the body did not arrive within {timeout_s} s"
    return Response(
        json.dumps(problem(408, "Request Timeout", detail)),
        status=408,
        headers={"Connection": "close"},
        mimetype=PROBLEM_JSON,
    )


def _console_once(runtime: Runtime) -> Console:
    global _console  # noqa: PLW0603 - one console per container instance, like the runtime
    with _lock:
        if _console is None:
            _console = Console.for_runtime(runtime)
        return _console


def _read_body(runtime: Runtime, request: Request) -> bytes | Response:
    """The body, one byte more than allowed at most (the caller answers 413), or the answer to a
    body that did not arrive whole: 408 when it was cut short, 400 when its framing is bad."""
    limit = runtime.full_settings.max_body_bytes
    try:
        body = request.stream.read(limit + 1)
    except OSError:  # a chunked body that ended early (gunicorn's NoMoreData)
        return _body_cut_short(request.path, runtime.full_settings.http_body_timeout_s)
    except ParseException as error:  # chunked framing gunicorn cannot read (InvalidChunkSize…)
        detail = f"the chunked body is malformed: {type(error).__name__}"
        return Response(json.dumps(problem(400, "Bad Request", detail)), status=400, mimetype=PROBLEM_JSON)
    if request.content_length is not None and len(body) < min(request.content_length, limit + 1):
        return _body_cut_short(request.path, runtime.full_settings.http_body_timeout_s)
    return body


def _console_page(runtime: Runtime, request: Request) -> Response:
    body = _read_body(runtime, request) if request.method == "POST" else b""
    if isinstance(body, Response):
        return body
    console, limit = _console_once(runtime), runtime.full_settings.max_body_bytes
    if len(body) > limit:
        answer = console.too_large(limit)
    else:
        headers = {name.lower(): value for name, value in request.headers.items()}
        query = request.query_string.decode("latin-1")
        incoming = ConsoleRequest(request.method, request.path, query, headers, body, request.remote_addr)
        answer = console.handle(incoming)
    content = b"" if request.method == "HEAD" else answer.body
    return Response(content, status=answer.status, headers=answer.headers, content_type=answer.content_type)


def _healthy() -> Response:
    return Response(json.dumps({"status": "ok"}), status=200, mimetype="application/json")


@functions_framework.http
def webhook(request: Request) -> Response:
    runtime = _runtime_once()
    if request.method == "GET" and request.path == "/healthz":  # the health check: the runtime is built
        return _healthy()
    if request.path == PREFIX or request.path.startswith(f"{PREFIX}/"):
        return _console_page(runtime, request)
    body = _read_body(runtime, request)  # the router answers 413 to one byte too many
    if isinstance(body, Response):
        return body
    headers = {name.lower(): value for name, value in request.headers.items()}
    answer = runtime.router.handle(WebRequest(request.method, request.path, headers, body))
    return Response(
        answer.text, status=answer.status, headers=answer.headers, content_type=answer.content_type
    )


@functions_framework.http
def poll(request: Request) -> Response:
    """One ``ecs-detach.accepted`` CloudEvent (binary or structured mode): look at the job once;
    a running job goes back to the jobs topic with its delay. 422 for anything else (the broker
    dead-letters it); an error answers 500, and the broker delivers the event again."""
    runtime = _runtime_once()
    if request.method == "GET":  # the readiness probe (/healthz): the runtime is built
        return _healthy()
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        reply = runtime.job_event(cloudevent_object(headers, request.get_data()))
    except InvalidInput as error:
        return Response(
            json.dumps(invalid_problem(error, 422)), status=422, mimetype="application/problem+json"
        )
    return Response(json.dumps(reply), status=200, mimetype="application/json")

"""The webhook as a functions-framework target, for containers (Knative, Cloud Run style, Kubernetes).

    functions-framework --source handler/entry/container.py --target webhook --port 8080

Configuration and credentials come from the environment (``ECS_DETACH_*``,
``HUAWEICLOUD_SDK_*``); routes and answers are those of ``WebhookRouter``. Run the poll worker
beside it (``ecs-detach up`` or the worker command) on the same jobs topic.
"""

from __future__ import annotations

import json
import threading

import functions_framework
from flask import Request, Response

from handler.entry.runtime import ConfigError, Runtime, build_runtime
from handler.entry.webhooks import WebRequest
from handler.log import configure
from handler.settings import CloudCredentials, Settings

_lock = threading.Lock()
_runtime: Runtime | None = None


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


@functions_framework.http
def webhook(request: Request) -> Response:
    runtime = _runtime_once()
    limit = runtime.settings.max_body_bytes
    body = request.stream.read(limit + 1)  # one byte more than allowed: the router answers 413
    headers = {name.lower(): value for name, value in request.headers.items()}
    answer = runtime.router.handle(WebRequest(request.method, request.path, headers, body))
    return Response(
        json.dumps(answer.body), status=answer.status, headers=answer.headers, mimetype=answer.content_type
    )

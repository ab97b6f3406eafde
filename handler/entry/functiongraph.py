"""FunctionGraph entrypoints: ``handler`` (detach) and ``poll_handler`` (poll), ``init`` optional.

Configure the function handler as ``handler.entry.functiongraph.handler`` (or ``.poll_handler``).
The runtime is built once per instance and reused across invocations. Credentials: the
function's agency (temporary AK/SK/token from the context) win over ``HUAWEICLOUD_SDK_*``;
they rotate, so each invocation refreshes them. No web framework is imported here.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from handler.cloud import Credentials
from handler.core.validation import InvalidInput
from handler.entry._outcomes import invalid_problem, outcome_body
from handler.entry.runtime import ConfigError, Runtime, build_runtime
from handler.log import configure, log_event
from handler.settings import CloudCredentials, Settings
from handler.sources import parse_accepted, parse_request

# FunctionGraph's context object: read through getattr (getSecurityAccessKey, getProjectID, …),
# since its methods differ between runtimes and local test harnesses.
Context = object


_lock = threading.Lock()
_runtime: Runtime | None = None


def _credentials(context: Context | None) -> Credentials:
    configured = CloudCredentials()
    project_id = configured.project_id or os.environ.get("RUNTIME_PROJECT_ID")
    if context is not None:
        ak = _call(context, "getSecurityAccessKey")
        sk = _call(context, "getSecuritySecretKey")
        if ak and sk:
            token = _call(context, "getSecurityToken")
            return Credentials.model_validate(
                {
                    "access_key": ak,
                    "secret_key": sk,
                    "security_token": token or None,
                    "project_id": project_id or _call(context, "getProjectID") or None,
                }
            )
    credentials = configured.credentials()
    if credentials is None:
        raise ConfigError(
            "no credentials: give the function an agency, or set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"
        )
    return credentials.model_copy(update={"project_id": project_id})


def _call(context: Context, method: str) -> str:
    getter = getattr(context, method, None)
    value = getter() if callable(getter) else None
    return value if isinstance(value, str) else ""


def _runtime_for(context: Context | None) -> Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per function instance, by design
    credentials = _credentials(context)
    with _lock:
        if _runtime is None:
            settings = Settings()
            configure(settings.log_level)
            _runtime = build_runtime(settings, credentials)
        else:
            _runtime.ecs.use_credentials(credentials)
        return _runtime


def init(context: Context) -> None:
    """FunctionGraph initializer: build clients before the first event arrives."""
    _runtime_for(context)


def handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Detach: the event is a detach request (JSON object) or an ``ecs-detach.requested`` CloudEvent."""
    runtime = _runtime_for(context)
    try:
        request = parse_request(event)
    except InvalidInput as error:
        log_event("detach.invalid", reason=str(error))
        return {"status_code": 422, **invalid_problem(error)}
    status, body = outcome_body(runtime.detach(request))
    return {"status_code": status, **body}


def poll_handler(event: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """Poll: the event is an ``ecs-detach.accepted`` CloudEvent. A running job is re-published
    to the jobs topic with a delay; the function returns at once instead of sleeping."""
    runtime = _runtime_for(context)
    accepted = parse_accepted(event)  # invalid: raise, so the platform's retry/DLQ policy applies
    outcome = runtime.poll(accepted.data)
    if outcome.result is not None:
        return {
            "status": "finished",
            "outcome": outcome.result.outcome.value,
            "job_id": outcome.result.job_id,
        }
    continuation = accepted.model_copy(update={"data": outcome.next})
    runtime.jobs.publish(continuation.model_dump_json(), delay=outcome.delay_s)
    return {"status": "continued", "job_id": accepted.data.job_id, "next_poll_in_s": outcome.delay_s}

"""What every service client shares: a signed ``httpx.Client``, timeouts and typed errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx

from handler.cloud._budget import remaining, spend_call
from handler.cloud._credentials import Credentials
from handler.cloud._errors import ApiError, CallBudgetSpent, TransportError
from handler.cloud._ids import checked
from handler.cloud._signer import SignerAuth, encode_query
from handler.cloud._transport import CookielessClient, default_transport
from handler.core.backoff import RetryPolicy, retryable
from handler.core.validation import MalformedInput, load_json
from handler.errors import ConfigError
from handler.support.log import log_event, redact_text

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_RETRY = RetryPolicy()
USER_AGENT = "ecs-detach/0.1"

_Client = TypeVar("_Client", bound="SignedClient")


class SignedClient:
    """One service endpoint, every request signed with AK/SK. Every call has a timeout and
    raises ``ApiError`` (an error answer) or ``TransportError`` (no answer).

    ``clock`` dates the signatures and ``sleep`` waits between tries (the defaults are the real
    ones; tests drive both from one fake clock).

    Subclasses set ``api_version``, the first path segment (``v1``, ``v2``).
    """

    api_version: ClassVar[str]

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retry = retry
        self._timeout = timeout
        self._timeouts = timeout.as_dict()  # the request extension of a call with no time budget
        self._clock = clock
        self._sleep = sleep
        self._auth = SignerAuth(credentials, clock=clock)
        self._project_id = credentials.project_id
        self._base = endpoint.rstrip("/")
        self._http = CookielessClient(
            base_url=self._base,
            auth=self._auth,
            timeout=timeout,
            transport=transport if transport is not None else default_transport(),
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )
        # Two of httpx's default headers say nothing here: "Accept: */*" takes any answer, and
        # "Connection: keep-alive" is HTTP/1.1's default. Each costs every call its encoding,
        # http.client's checks and the signer's look (about 10 µs a call for the two).
        for needless in ("Accept", "Connection"):
            del self._http.headers[needless]

    @property
    def endpoint(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def use_credentials(self, credentials: Credentials) -> None:
        """Swap in fresh (e.g. rotated temporary) credentials; the connection pool stays."""
        self._auth = SignerAuth(credentials, clock=self._clock)
        self._http.auth = self._auth
        self._project_id = credentials.project_id

    def close(self) -> None:
        self._http.close()

    def __enter__(self: _Client) -> _Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _path(self, project_id: str | None, template: str, **ids: str) -> str:
        """``/{api_version}/{project}/{template}``, each ``{name}`` in the template filled with
        ``ids[name]`` once it is checked to be an id of that kind (``InvalidId`` otherwise, and
        nothing is sent) and percent-encoded (``:`` → ``%3A``)."""
        project = self._project_id if project_id is None else project_id  # "" given is refused below
        if project is None or (project_id is None and not project):
            raise ConfigError("no project ID: set HUAWEICLOUD_SDK_PROJECT_ID or pass project_id")
        segments = {name: quote(checked(name, value), safe="") for name, value in ids.items()}
        return f"/{self.api_version}/{quote(checked('project_id', project), safe='')}/" + template.format(
            **segments
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One call, tried again while the failure is retryable (429, 5xx, no answer), the
        retry policy has tries left and the time budget allows the wait."""
        content = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            try:
                return self._send_once(method, path, params, content)
            except CallBudgetSpent:
                raise  # nothing was sent, and trying again spends nothing more
            except (ApiError, TransportError) as error:
                status = error.status if isinstance(error, ApiError) else None
                code = error.code if isinstance(error, ApiError) else None
                retry_after = error.retry_after_s if isinstance(error, ApiError) else None
                delay = self._retry.delay(attempt, retry_after) if retryable(status, code) else None
                left = remaining()
                if delay is None or (left is not None and delay >= left):
                    raise
                log_event(
                    "cloud.retry",
                    method=method,
                    path=path,
                    attempt=attempt + 1,
                    delay_s=round(delay, 3),
                    error=str(error),
                )
                self._sleep(delay)
                attempt += 1

    def _send_once(
        self, method: str, path: str, params: dict[str, str] | None, content: bytes | None
    ) -> httpx.Response:
        if not spend_call():
            raise CallBudgetSpent(f"{method} {path}: not sent, the request's budget of cloud calls is spent")
        timeouts = self._timeouts
        left = remaining()
        if left is not None:
            if left <= 0:
                raise TransportError(
                    f"{method} {path}: the invocation's time budget is used up", timeout=True
                )
            timeouts = httpx.Timeout(min(left, self._timeout.read or left)).as_dict()
        # The request is built here, not by Client.request: that parses the URL twice (the path,
        # then merged with the base URL), a tenth of a call's CPU; one absolute URL, its query
        # already in the canonical form the signer wants, parses once (params= would parse again).
        url = self._base + path
        if params:
            url += "?" + encode_query(params.items())
        request = httpx.Request(
            method,
            httpx.URL(url),
            content=content,
            headers=self._http.headers,  # copied into the request's own headers
            extensions={"timeout": timeouts},
        )
        # X-Project-Id names the project of the path (``/{version}/{project}/…``, ``_path``), as
        # the API wants it with AK/SK, not the credentials' default: a request for another project
        # of the account is scoped to that project (the signer adds it only when it is not set).
        request.headers["X-Project-Id"] = path.split("/", 3)[2]
        try:
            response = self._http.send(request)
        except httpx.TimeoutException as exc:
            raise TransportError(f"{method} {path}: timed out ({type(exc).__name__})", timeout=True) from exc
        except httpx.TransportError as exc:
            # The text may quote a proxy URL (HTTP(S)_PROXY) with its credentials: redacted.
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {redact_text(str(exc))}") from exc
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object (``ApiError`` ``InvalidResponse`` if it is not one)."""
    try:
        body = load_json(response.content) if response.content else {}
    except MalformedInput as exc:
        raise ApiError(
            response.status_code,
            "InvalidResponse",
            f"answer is not JSON ({exc.errors[0].reason}): {response.text[:200]!r}",
            request_id=response.headers.get("x-request-id"),
        ) from None
    if not isinstance(body, dict):
        raise ApiError(response.status_code, "InvalidResponse", "answer is not a JSON object")
    return body


def required_str(response: httpx.Response, body: dict[str, Any], key: str, call: str) -> str:
    """``body[key]`` when it is a non-empty string, else ``ApiError`` ``InvalidResponse``."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(
            response.status_code,
            "InvalidResponse",
            f"{call} answered without a {key}",
            request_id=response.headers.get("x-request-id"),
        )
    return value

"""The ECS v1 calls the functions make, over a signed ``httpx.Client``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from handler.cloud._credentials import Credentials
from handler.cloud._errors import ApiError, TransportError
from handler.cloud._signer import SignerAuth
from handler.core.resources import BlockDevice, Job, Server

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "ecs-detach/0.1"

_block_devices = TypeAdapter(list[BlockDevice])
_servers = TypeAdapter(list[Server])


@dataclass(frozen=True)
class DetachAnswer:
    """The API accepted the detach: a job to follow."""

    job_id: str
    request_id: str | None
    status_code: int


class EcsClient:
    """Detach, show job, block devices, servers. Every call has a timeout and raises
    ``ApiError`` (an error answer) or ``TransportError`` (no answer)."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._auth = SignerAuth(credentials)
        self._project_id = credentials.project_id
        self._http = httpx.Client(
            base_url=endpoint.rstrip("/"),
            auth=self._auth,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )

    @property
    def endpoint(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def use_credentials(self, credentials: Credentials) -> None:
        """Swap in fresh (e.g. rotated temporary) credentials; the connection pool stays."""
        self._auth = SignerAuth(credentials)
        self._http.auth = self._auth
        self._project_id = credentials.project_id

    def detach_volume(
        self, server_id: str, volume_id: str, *, project_id: str | None = None, force: bool = False
    ) -> DetachAnswer:
        """``DELETE /v1/{project_id}/cloudservers/{server_id}/detachvolume/{volume_id}``."""
        path = self._path(project_id, "cloudservers", server_id, "detachvolume", volume_id)
        response = self._send("DELETE", path, params={"delete_flag": "1" if force else "0"})
        body = _json(response)
        job_id = body.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise ApiError(
                response.status_code,
                "InvalidResponse",
                "detach answered without a job_id",
                request_id=response.headers.get("x-request-id"),
            )
        return DetachAnswer(job_id, response.headers.get("x-request-id"), response.status_code)

    def show_job(self, job_id: str, *, project_id: str | None = None) -> Job:
        """``GET /v1/{project_id}/jobs/{job_id}``."""
        response = self._send("GET", self._path(project_id, "jobs", job_id))
        return Job.model_validate(_json(response))

    def list_block_devices(self, server_id: str, *, project_id: str | None = None) -> list[BlockDevice]:
        """``GET /v1/{project_id}/cloudservers/{server_id}/block_device``."""
        path = self._path(project_id, "cloudservers", server_id, "block_device")
        return _block_devices.validate_python(_json(self._send("GET", path)).get("volumeAttachments", []))

    def show_server(self, server_id: str, *, project_id: str | None = None) -> Server:
        """``GET /v1/{project_id}/cloudservers/{server_id}``."""
        body = _json(self._send("GET", self._path(project_id, "cloudservers", server_id)))
        return Server.model_validate(body.get("server"))

    def list_servers(
        self,
        *,
        project_id: str | None = None,
        limit: int = 100,
        offset: int = 1,
        name: str | None = None,
        status: str | None = None,
    ) -> list[Server]:
        """``GET /v1/{project_id}/cloudservers/detail`` (one page)."""
        params = {"limit": str(limit), "offset": str(offset)}
        if name:
            params["name"] = name
        if status:
            params["status"] = status
        path = self._path(project_id, "cloudservers", "detail")
        return _servers.validate_python(_json(self._send("GET", path, params=params)).get("servers", []))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EcsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _path(self, project_id: str | None, *segments: str) -> str:
        project = project_id or self._project_id
        if not project:
            raise ValueError("no project ID: set HUAWEICLOUD_SDK_PROJECT_ID or pass project_id")
        return "/v1/" + "/".join(quote(part, safe="") for part in (project, *segments))

    def _send(self, method: str, path: str, *, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, params=params)
        except httpx.TimeoutException as exc:
            raise TransportError(f"{method} {path}: timed out ({type(exc).__name__})", timeout=True) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content) if response.content else {}
    except ValueError as exc:
        raise ApiError(
            response.status_code,
            "InvalidResponse",
            f"answer is not JSON: {response.text[:200]!r}",
            request_id=response.headers.get("x-request-id"),
        ) from exc
    if not isinstance(body, dict):
        raise ApiError(response.status_code, "InvalidResponse", "answer is not a JSON object")
    return body

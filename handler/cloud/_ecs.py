"""The ECS v1 calls the functions make, over a signed ``httpx.Client``."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from handler.cloud._client import SignedClient, json_object, required_str
from handler.core.resources import BlockDevice, Server

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from handler.core.jobs import Job


@cache
def _list_of(model: type[Any]) -> TypeAdapter[list[Any]]:
    """The validator of a list of ``model``, made on first use: most invocations need none, and
    a cold start that makes none skips ``pydantic.type_adapter`` too."""
    from pydantic import TypeAdapter  # noqa: PLC0415

    return TypeAdapter(list[model])  # type: ignore[valid-type] # a model class: a type at runtime


class DetachAnswer(NamedTuple):
    """The API accepted the detach: a job to follow."""

    job_id: str
    request_id: str | None
    status_code: int


class EcsClient(SignedClient):
    """Detach, show job, block devices, servers. Every call has a timeout and raises
    ``ApiError`` (an error answer) or ``TransportError`` (no answer)."""

    api_version = "v1"

    def detach_volume(
        self, server_id: str, volume_id: str, *, project_id: str | None = None, force: bool = False
    ) -> DetachAnswer:
        """``DELETE /v1/{project_id}/cloudservers/{server_id}/detachvolume/{volume_id}``."""
        path = self._path(
            project_id,
            "cloudservers/{server_id}/detachvolume/{volume_id}",
            server_id=server_id,
            volume_id=volume_id,
        )
        response = self._send("DELETE", path, params={"delete_flag": "1" if force else "0"})
        job_id = required_str(response, json_object(response), "job_id", "detach")
        return DetachAnswer(job_id, response.headers.get("x-request-id"), response.status_code)

    def show_job(self, job_id: str, *, project_id: str | None = None) -> Job:
        """``GET /v1/{project_id}/jobs/{job_id}``."""
        from handler.core.jobs import Job  # noqa: PLC0415 (the poll function's only: not on a detach's cold path)

        response = self._send("GET", self._path(project_id, "jobs/{job_id}", job_id=job_id))
        return Job.model_validate(json_object(response))

    def list_block_devices(self, server_id: str, *, project_id: str | None = None) -> list[BlockDevice]:
        """``GET /v1/{project_id}/cloudservers/{server_id}/block_device``."""
        path = self._path(project_id, "cloudservers/{server_id}/block_device", server_id=server_id)
        return _list_of(BlockDevice).validate_python(
            json_object(self._send("GET", path)).get("volumeAttachments", [])
        )

    def show_server(self, server_id: str, *, project_id: str | None = None) -> Server:
        """``GET /v1/{project_id}/cloudservers/{server_id}``."""
        body = json_object(
            self._send("GET", self._path(project_id, "cloudservers/{server_id}", server_id=server_id))
        )
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
        path = self._path(project_id, "cloudservers/detail")
        return _list_of(Server).validate_python(
            json_object(self._send("GET", path, params=params)).get("servers", [])
        )

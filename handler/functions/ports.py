"""What the two functions need from the outside world, as protocols.

The cloud client (``handler.cloud.EcsClient``) and every topic backend satisfy these; the
functions are written against them only, so tests and other clouds can plug in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from handler.cloud import DetachAnswer
from handler.core.resources import BlockDevice, Server, Volume

if TYPE_CHECKING:
    from handler.core.jobs import Job


class BlockDeviceApi(Protocol):
    def list_block_devices(self, server_id: str, *, project_id: str | None = None) -> list[BlockDevice]: ...


class DetachApi(BlockDeviceApi, Protocol):
    def show_server(self, server_id: str, *, project_id: str | None = None) -> Server: ...

    def detach_volume(
        self, server_id: str, volume_id: str, *, project_id: str | None = None, force: bool = False
    ) -> DetachAnswer: ...


class JobApi(BlockDeviceApi, Protocol):
    def show_job(self, job_id: str, *, project_id: str | None = None) -> Job: ...


class VolumeApi(Protocol):
    def show_volume(self, volume_id: str, *, project_id: str | None = None) -> Volume: ...


class Publisher(Protocol):
    def publish(self, body: str, *, delay: float = 0.0) -> str: ...

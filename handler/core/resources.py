"""The cloud's resources as the ECS v1 API reports them (docs/cloud-api.md §9), and EVS's volume;
a job (§2) is in ``handler.core.jobs``, which only the poll function reads.

Parsed leniently: unknown fields are ignored.
"""

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    # defer_build: a model's validator is built when first used, so a cold start pays only for
    # the answers it reads (a detach never reads a job).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class BlockDevice(Lenient):
    """One entry of ``GET …/cloudservers/{server_id}/block_device``."""

    volume_id: str = Field(alias="volumeId")
    server_id: str | None = Field(default=None, alias="serverId")
    device: str | None = None
    size: int | None = None
    boot_index: int | None = Field(default=None, alias="bootIndex")
    bus: str | None = None


class AttachedVolume(Lenient):
    """One entry of a server's ``os-extended-volumes:volumes_attached``."""

    id: str
    device: str | None = None
    boot_index: str | None = Field(default=None, alias="bootIndex")


class Server(Lenient):
    """``GET /v1/{project_id}/cloudservers/{server_id}``."""

    id: str
    name: str | None = None
    status: str
    task_state: str | None = Field(default=None, alias="OS-EXT-STS:task_state")
    locked: bool | None = None
    tags: list[str] = Field(default=[])
    metadata: dict[str, str] = Field(default={})
    root_device_name: str | None = Field(default=None, alias="OS-EXT-SRV-ATTR:root_device_name")
    volumes_attached: list[AttachedVolume] = Field(default=[], alias="os-extended-volumes:volumes_attached")


class VolumeAttachment(Lenient):
    """One entry of an EVS volume's ``attachments``."""

    server_id: str
    device: str | None = None
    attachment_id: str | None = None


class Volume(Lenient):
    """``GET /v2/{project_id}/cloudvolumes/{volume_id}`` (EVS); ``bootable`` arrives as "true"/"false"."""

    id: str
    name: str | None = None
    status: str
    size: int | None = Field(default=None, description="GB")
    volume_type: str | None = Field(default=None, description="SATA, SAS, SSD, GPSSD…")
    bootable: bool = False
    multiattach: bool = False
    attachments: list[VolumeAttachment] = Field(default=[])

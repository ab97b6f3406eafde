"""The cloud's resources as the ECS v1 API reports them (docs/cloud-api.md §2, §9).

Parsed leniently: unknown fields are ignored, timestamps may be empty while a job runs.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class JobStatus(str, Enum):
    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    PENDING_PAYMENT = "PENDING_PAYMENT"


class _Lenient(BaseModel):
    # defer_build: a model's validator is built when first used, so a cold start pays only for
    # the answers it reads (a detach never reads a job).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


def _empty_to_none(value: Any) -> Any:
    return None if value in ("", None) else value


class SubJobEntities(_Lenient):
    server_id: str | None = None
    errorcode_message: str | None = None


class SubJob(_Lenient):
    status: JobStatus | None = None
    job_id: str | None = None
    job_type: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    entities: SubJobEntities = Field(default_factory=SubJobEntities)


class JobEntities(_Lenient):
    server_id: str | None = None
    sub_jobs_total: int | None = None
    sub_jobs: list[SubJob] = Field(default=[])


class Job(_Lenient):
    """``GET /v1/{project_id}/jobs/{job_id}``."""

    job_id: str
    status: JobStatus
    job_type: str | None = None
    begin_time: datetime | None = None
    end_time: datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    entities: JobEntities = Field(default_factory=JobEntities)

    _blank_times = field_validator("begin_time", "end_time", mode="before")(_empty_to_none)

    def failure(self) -> tuple[str | None, str | None]:
        """The most specific error code and reason, looking into sub-jobs when the job is vague."""
        code, reason = self.error_code, self.fail_reason
        for sub in self.entities.sub_jobs:
            code = code or sub.error_code
            reason = reason or sub.fail_reason or sub.entities.errorcode_message
        return code, reason


class BlockDevice(_Lenient):
    """One entry of ``GET …/cloudservers/{server_id}/block_device``."""

    volume_id: str = Field(alias="volumeId")
    server_id: str | None = Field(default=None, alias="serverId")
    device: str | None = None
    size: int | None = None
    boot_index: int | None = Field(default=None, alias="bootIndex")
    bus: str | None = None


class AttachedVolume(_Lenient):
    """One entry of a server's ``os-extended-volumes:volumes_attached``."""

    id: str
    device: str | None = None
    boot_index: str | None = Field(default=None, alias="bootIndex")


class Server(_Lenient):
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


class VolumeAttachment(_Lenient):
    """One entry of an EVS volume's ``attachments``."""

    server_id: str
    device: str | None = None
    attachment_id: str | None = None


class Volume(_Lenient):
    """``GET /v2/{project_id}/cloudvolumes/{volume_id}`` (EVS); ``bootable`` arrives as "true"/"false"."""

    id: str
    name: str | None = None
    status: str
    size: int | None = Field(default=None, description="GB")
    volume_type: str | None = Field(default=None, description="SATA, SAS, SSD, GPSSD…")
    bootable: bool = False
    multiattach: bool = False
    attachments: list[VolumeAttachment] = Field(default=[])

"""An ECS job as ``GET /v1/{project_id}/jobs/{job_id}`` reports it (docs/cloud-api.md §2): only
the poll function reads one, so a detach's cold start does not build these models.

Parsed leniently like the other resources (``handler.core.resources``): unknown fields are
ignored, timestamps may be empty while a job runs.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field, field_validator

from handler.core.resources import Lenient


class JobStatus(str, Enum):
    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    PENDING_PAYMENT = "PENDING_PAYMENT"


def _empty_to_none(value: Any) -> Any:
    return None if value in ("", None) else value


class SubJobEntities(Lenient):
    server_id: str | None = None
    errorcode_message: str | None = None


class SubJob(Lenient):
    status: JobStatus | None = None
    job_id: str | None = None
    job_type: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    entities: SubJobEntities = Field(default_factory=SubJobEntities)


class JobEntities(Lenient):
    server_id: str | None = None
    sub_jobs_total: int | None = None
    sub_jobs: list[SubJob] = Field(default=[])


class Job(Lenient):
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

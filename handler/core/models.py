"""The messages of the detach flow, as pydantic models: requests, accepted jobs, results, CloudEvents.

Versioned by addition: fields are added, never change meaning; unknown fields are ignored.
"""

import re
import uuid
from datetime import datetime, timezone
from enum import Enum
from functools import cache
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
PROJECT_ID_PATTERN = r"^[0-9a-fA-F]{32}$"
# ECS job ids are 32 hex digits (ff80808288d41e1b018917ae93d3044c) or a UUID (cloud-api.md §1).
JOB_ID_PATTERN = (
    r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
DEVICE_PATTERN = r"^(/dev/)?(x?vd|sd|hd|nvme)[a-z0-9]{1,6}$"


class Matching:
    """A string field's pattern, checked with Python's ``re`` (``fullmatch``: a trailing newline
    does not slip through ``$``), published in the JSON Schema as ``pattern``, and failing with
    the error pydantic's own ``pattern`` raises (``string_pattern_mismatch``, the pattern in its
    context). Not pydantic's ``pattern`` constraint: pydantic-core's Rust regex engine, loaded by
    the first pattern a process compiles, costs about 0.45 MiB of a cold start's peak RSS
    (docs/performance.md), for checks that the standard library's engine, already loaded, makes.
    """

    __slots__ = ("pattern", "regex")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern)

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema

    def _check(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise PydanticCustomError(
                "string_pattern_mismatch",
                "String should match pattern '{pattern}'",
                {"pattern": self.pattern},
            )
        return value


UUID = Matching(UUID_PATTERN)
PROJECT_ID = Matching(PROJECT_ID_PATTERN)
JOB_ID = Matching(JOB_ID_PATTERN)
DEVICE = Matching(DEVICE_PATTERN)
UuidStr = Annotated[str, UUID]
ProjectIdStr = Annotated[str, PROJECT_ID]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DetachRequest(BaseModel):
    """Take one EVS volume off one ECS server."""

    # defer_build (also for the subclasses): validators are built on first use, so a cold
    # start builds only the models its event needs.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    server_id: UuidStr = Field(description="ECS server UUID")
    device: Annotated[str, DEVICE] | None = Field(
        default=None,
        description="Disk by its device on the server (vdb, /dev/vdb); resolved to its volume",
    )
    volume_id: UuidStr | None = Field(
        default=None,
        validate_default=True,
        description="EVS volume UUID (or give `device`)",
    )
    project_id: ProjectIdStr | None = Field(
        default=None,
        description="Project (32 hex); defaults to the credentials' project",
    )
    region: str | None = Field(default=None, max_length=64)
    delete_flag: int = Field(default=0, ge=0, le=1, description="1 = force-detach a data disk")
    reason: str | None = Field(default=None, max_length=1024)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    alert_id: str | None = Field(default=None, max_length=256, description="Originating alert")
    dry_run: bool = Field(default=False, description="Check everything, report the detach, do not make it")
    origin: dict[str, str] = Field(
        default={},
        max_length=32,
        description="Where the request came from (source, fingerprint, ticket…): the audit chain",
    )

    @field_validator("server_id", "volume_id", "project_id")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @field_validator("device")
    @classmethod
    def _device_path(cls, value: str | None) -> str | None:
        return value if value is None or value.startswith("/dev/") else f"/dev/{value}"

    @field_validator("volume_id")
    @classmethod
    def _names_a_disk(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("device") is None:
            raise ValueError("volume_id or device is required")
        return value

    @property
    def subject(self) -> str:
        return f"{self.server_id}/{self.volume_id or self.device}"


class DetachAccepted(DetachRequest):
    """The cloud accepted the detach: a job to follow (``ecs-detach.accepted``)."""

    project_id: ProjectIdStr
    volume_id: UuidStr
    job_id: Annotated[str, JOB_ID] = Field(description="ECS job id: 32 hex digits or a UUID")
    request_id: str | None = Field(default=None, description="X-Request-Id of the detach call")
    accepted_at: datetime
    attempt: int = Field(default=0, ge=0, description="Job polls made so far")
    not_before: datetime = Field(description="Next poll no earlier than this")
    deadline: datetime = Field(description="Give up (timed_out) after this")


class Outcome(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ALREADY_DETACHED = "already_detached"
    REJECTED = "rejected"
    DRY_RUN = "dry_run"


EVENT_REQUESTED = "ecs-detach.requested"
EVENT_ACCEPTED = "ecs-detach.accepted"
EVENT_QUEUED = "ecs-detach.queued"
EVENT_APPROVAL_TURN = "ecs-detach.approval_turn"
EVENT_APPROVAL_REQUESTED = "ecs-detach.approval_requested"  # on the results topic


def result_event_type(outcome: Outcome) -> str:
    return f"ecs-detach.{outcome.value}"


DataT = TypeVar("DataT", bound=BaseModel)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 envelope in structured JSON mode."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=utcnow)
    datacontenttype: str = "application/json"
    data: DataT


# The envelope every event of the flow is built with. pydantic caches a generic model's
# parametrizations weakly: ``CloudEvent[Any]`` written in a call is collected with its last
# instance at the next garbage collection, and built again (its class and its validator, about
# 4 ms) by the call after it — one detach event in six paid that.
AnyEvent = CloudEvent[Any]


def event_model(data: type[DataT]) -> type[CloudEvent[DataT]]:
    """``CloudEvent[data]``, the envelope that parses events carrying ``data``: made on first use
    (each costs about 0.7 ms, and a detach cold start parses none) and kept (above)."""
    return cast("type[CloudEvent[DataT]]", _parametrized(data))


@cache
def _parametrized(data: type[BaseModel]) -> type[CloudEvent[Any]]:
    return CloudEvent[data]  # type: ignore[valid-type] # a model class: a type at runtime


def envelope(data: DetachRequest, *, type_: str, source: str) -> CloudEvent[Any]:
    """Wrap a message of the flow in a CloudEvent whose subject is ``server/volume``."""
    return AnyEvent(source=source, type=type_, subject=data.subject, data=data)

"""Emulator settings and the credentials its API gateway accepts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from emulator.faults import Duration, FaultConfig

DEMO_PROJECT_ID = "0123456789abcdef0123456789abcdef"


class EmulatorConfig(BaseModel):
    """Job timing, gateway tolerance and injected faults. Timing applies to jobs submitted after
    a change. ``faults`` is left out of dumps (``/_emulator/state``, ``/_emulator/config``):
    ``/_emulator/faults`` shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_init_s: float = Field(default=0.5, ge=0)
    """How long a new job stays ``INIT`` before it is ``RUNNING``."""
    job_duration_s: Duration = 3.0
    """Time from submission to ``SUCCESS``/``FAIL`` (never shorter than ``job_init_s``): seconds,
    or a distribution drawn per job (``emulator.faults``)."""
    job_retention_s: float = Field(default=86400.0, ge=0)
    """How long a finished job can still be read; after that it answers 404."""
    max_clock_skew_s: int = Field(default=900, ge=0)
    """Largest accepted distance between ``X-Sdk-Date`` and the emulator clock."""
    faults: FaultConfig = Field(default_factory=FaultConfig, exclude=True)
    """What goes wrong on purpose (``emulator.faults``); nothing by default."""

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A validated copy with ``changes`` applied (unknown fields are rejected)."""
        return EmulatorConfig.model_validate({**self.model_dump(), "faults": self.faults, **changes})


@dataclass(frozen=True)
class EmulatorCredential:
    """An AK/SK pair bound to one project; temporary ones also carry a security token."""

    access_key: str
    secret_key: str = field(repr=False)
    project_id: str = DEMO_PROJECT_ID
    security_token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """One human line without the secret key or the token."""
        token = ", with security token" if self.security_token is not None else ""
        return f"AK {self.access_key}, project {self.project_id}{token}"


DEMO_CREDENTIAL = EmulatorCredential(
    access_key="DEMOACCESSKEY0000000",
    secret_key="demo-secret-key-for-the-local-emulator-0",  # noqa: S106 - documented demo key
    project_id=DEMO_PROJECT_ID,
)


def credential_from_env(environ: Mapping[str, str] | None = None) -> EmulatorCredential:
    """The ``HUAWEICLOUD_SDK_*`` credential when AK and SK are set, else ``DEMO_CREDENTIAL``."""
    env = os.environ if environ is None else environ
    access_key = env.get("HUAWEICLOUD_SDK_AK", "")
    secret_key = env.get("HUAWEICLOUD_SDK_SK", "")
    if not (access_key and secret_key):
        return DEMO_CREDENTIAL
    return EmulatorCredential(
        access_key=access_key,
        secret_key=secret_key,
        project_id=env.get("HUAWEICLOUD_SDK_PROJECT_ID") or DEMO_PROJECT_ID,
        security_token=env.get("HUAWEICLOUD_SDK_SECURITY_TOKEN") or None,
    )

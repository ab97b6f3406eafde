"""The approval policy as configured (``ECS_DETACH_APPROVAL_*``): whether, and by which rules, a
request waits for a person. Apart from the approvals themselves (``handler.core.approval``), which
only a deployment with approvals on ever loads: the settings read the policy on every cold start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_EXPIRY_S = 3600.0


class ApprovalRules(BaseModel):
    """With ``mode=rules``: a request waits for an approval when any of these matches."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    force: bool = Field(default=False, description="A force detach (delete_flag=1)")
    shared_disk: bool = Field(
        default=False, description="A disk attached to several servers, or multi-attach"
    )
    system_disk_stopped: bool = Field(default=False, description="The system disk of a stopped server")
    server_tags: list[str] = Field(default=[], description='Server tags, e.g. "env=prod"')
    projects: list[str] = Field(default=[], description="Project ids")
    max_disks_per_server: int | None = Field(
        default=None, ge=1, description="More disks of one server than this within the window"
    )
    window_s: float = Field(default=3600.0, gt=0, description="The window of max_disks_per_server")

    def any(self) -> bool:
        return bool(
            self.force
            or self.shared_disk
            or self.system_disk_stopped
            or self.server_tags
            or self.projects
            or self.max_disks_per_server
        )


class ApprovalPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    mode: Literal["never", "always", "rules"] = "never"
    rules: ApprovalRules = Field(default_factory=ApprovalRules)
    expiry_s: float = Field(default=DEFAULT_EXPIRY_S, gt=0, description="Undecided after this: rejected")

    @model_validator(mode="after")
    def _rules_named(self) -> ApprovalPolicy:
        if self.mode == "rules" and not self.rules.any():
            raise ValueError("approval mode 'rules' needs at least one rule (ECS_DETACH_APPROVAL_*)")
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "never"

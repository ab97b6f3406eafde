"""What the functions read from ``ECS_DETACH_*`` (``FunctionSettings``) and the cloud
credentials (``CloudCredentials``); ``handler.settings`` tells the two settings classes apart."""

# No ``from __future__ import annotations``: pydantic would evaluate each of the fields'
# annotations from a string when the class is made (a compile and an eval each, about 1 ms of
# every cold start for these two classes).
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from handler.cloud import CloudName, Credentials, endpoint
from handler.core.approval_policy import ApprovalPolicy, ApprovalRules
from handler.core.policy import SafetyPolicy
from handler.core.polling import PollSchedule
from handler.support.env_settings import EnvSettings

DEFAULT_TOPICS_DB = "sqlite:///.ecs-detach/topics.db"
DEFAULT_STORE = "sqlite:///.ecs-detach/store.db"
DEFAULT_HISTORY = "sqlite:///.ecs-detach/history.db"
HISTORY_OFF = "off"

DEFAULT_STORE = "sqlite:///.ecs-detach/store.db"
DEFAULT_HISTORY = "sqlite:///.ecs-detach/history.db"
HISTORY_OFF = "off"


class CloudCredentials(EnvSettings):
    """``HUAWEICLOUD_SDK_*``: permanent AK/SK, or temporary ones with a security token."""

    env_prefix = "HUAWEICLOUD_SDK_"

    ak: str | None = None
    sk: SecretStr | None = None
    project_id: str | None = None
    security_token: SecretStr | None = None

    def credentials(self) -> Credentials | None:
        """The configured credentials, or None when AK or SK is missing."""
        if not self.ak or self.sk is None:
            return None
        return Credentials(
            access_key=self.ak,
            secret_key=self.sk,
            project_id=self.project_id,
            security_token=self.security_token,
        )


class FunctionSettings(EnvSettings):
    """``ECS_DETACH_*``: what the detach, poll, relay and flush functions need."""

    env_prefix = "ECS_DETACH_"

    region: str | None = Field(default=None, description="Region, e.g. ap-southeast-1")
    cloud: CloudName = Field(default="huaweicloud", description="Endpoint pattern")
    ecs_endpoint: str | None = Field(
        default=None, description="ECS URL (e.g. a VPC endpoint); overrides region/cloud for ECS only"
    )
    evs_endpoint: str | None = Field(
        default=None, description="EVS URL; default: from region, else the ECS URL (no region: the emulator)"
    )
    smn_endpoint: str | None = Field(
        default=None, description="SMN URL; default: from region, else the ECS URL (no region: the emulator)"
    )
    jobs_topic: str = Field(default=f"{DEFAULT_TOPICS_DB}?topic=jobs")
    results_topic: str = Field(default=f"{DEFAULT_TOPICS_DB}?topic=results")
    delay_topic: str = Field(
        default=DEFAULT_TOPICS_DB, description="Where push topics (SMN, HTTP) hold delayed messages"
    )
    source: str = Field(default="ecs-detach", description="CloudEvents source of emitted events")
    poll_timeout_s: float = Field(default=600.0, gt=0, description="Give up on a job after this")
    first_poll_s: float = Field(default=2.0, ge=0)
    poll_factor: float = Field(default=0.15, ge=0)
    min_poll_delay_s: float = Field(default=1.0, gt=0)
    max_poll_delay_s: float = Field(default=20.0, gt=0)
    busy_retry_s: float = Field(default=30.0, gt=0, description="Wait when the server is busy")
    http_timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    visibility_timeout_s: float = Field(default=60.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    log_level: str = "INFO"
    # Exactly once (handler/guards/idempotency.py): records and locks in this store.
    store: str = Field(default=DEFAULT_STORE, description="Idempotency/lock store URL (sqlite, redis)")
    record_ttl_s: float = Field(
        default=86400.0, gt=0, description="How long a finished request is remembered"
    )
    # The audit history (handler/history, docs/history.md): every request and each of its steps.
    history: str = Field(
        default=DEFAULT_HISTORY,
        description=f"Audit history URL (sqlite, postgresql), or {HISTORY_OFF!r} to keep none",
    )
    history_retention_days: float = Field(
        default=400.0, gt=0, description="Steps older than this are pruned from the history"
    )
    history_wait_s: float = Field(
        default=0.0,
        ge=0,
        le=5,
        description="How long a step may wait for its history write (0: never; FunctionGraph: 1)",
    )
    invocation_timeout_s: float = Field(
        default=60.0, gt=0, description="The function timeout: an unfinished claim lapses after it"
    )
    # The outbox relay (handler/functions/relay.py): accepted jobs whose event never went out.
    relay_after_s: float = Field(
        default=20.0,
        gt=0,
        description="A noted job unpublished this long is published by the relay (even if its claim holds)",
    )
    relay_every_s: float = Field(default=5.0, gt=0, description="How often the worker's relay sweeps")
    dry_run: bool = Field(default=False, description="Check everything, report the detach, never make it")
    queue_check_s: float = Field(
        default=5.0,
        gt=0,
        description="How often a request queued behind another detach looks again",
    )
    queue_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="A queued request waiting longer is rejected (QueueTimeout)",
    )
    # Safety policy (handler/core/policy.py), evaluated before any mutating call.
    allowed_projects: list[str] = Field(default=[], description="JSON list; empty = any")
    allowed_servers: list[str] = Field(default=[], description="JSON list; empty = any")
    required_tag: str | None = Field(
        default=None, description='Server tag required, e.g. "auto-remediation=true"'
    )
    allow_system_disk_when_stopped: bool = False
    allow_shared_disks: bool = False
    allow_force: bool = False
    max_detaches_per_window: int = Field(default=10, ge=1, description="Blast radius, per project")
    detach_window_s: float = Field(default=600.0, gt=0)
    breaker_failures: int = Field(
        default=3, ge=1, description="Failed jobs in the window that stop all acting"
    )
    breaker_window_s: float = Field(default=600.0, gt=0)
    # Approvals (handler/core/approval.py, docs/approvals.md): a person says yes first.
    approval_mode: Literal["never", "always", "rules"] = Field(
        default="never", description="never (default), always, or rules (the APPROVAL_* rules below)"
    )
    approval_force: bool = Field(default=False, description="Rule: a force detach needs an approval")
    approval_shared_disk: bool = Field(default=False, description="Rule: a shared disk needs an approval")
    approval_system_disk_stopped: bool = Field(
        default=False, description="Rule: the system disk of a stopped server needs an approval"
    )
    approval_server_tags: list[str] = Field(
        default=[], description='Rule: servers with one of these tags (JSON list, "env=prod")'
    )
    approval_projects: list[str] = Field(default=[], description="Rule: these projects (JSON list)")
    approval_max_disks_per_server: int | None = Field(
        default=None, ge=1, description="Rule: more disks of one server than this within the window"
    )
    approval_window_s: float = Field(default=3600.0, gt=0, description="The window of the disk count rule")
    # At most 23 h: the store keeps a waiting request's key 24 h (DEFAULT_KEEP_ABANDONED_S), and
    # the approval's turns need it, the expiry's with an hour to spare for a late delivery.
    approval_expiry_s: float = Field(
        default=3600.0,
        gt=0,
        le=23 * 3600.0,
        description="Undecided for this long: rejected (ApprovalExpired)",
    )
    approval_link_secret: SecretStr | None = Field(
        default=None, description="HMAC key of the signed approval links (at least 32 characters)"
    )
    approval_base_url: str | None = Field(
        default=None, description="Public URL of the webhook endpoint, for links in events and messages"
    )
    max_records: int = Field(
        default=100, ge=1, description="Records (alerts, tickets, events) per request or event; more get 413"
    )
    max_cloud_calls: int = Field(
        default=400, ge=1, description="Cloud calls (policy reads and detaches, tries included) per request"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "FunctionSettings":
        self.poll_schedule()  # raises ValueError with the reason
        self.approval_policy()  # "rules" without a rule
        secret = self.approval_link_secret
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError(
                "approval_link_secret must be at least 32 characters (256 bits of a random token)"
            )
        return self

    def approval_policy(self) -> ApprovalPolicy:
        return ApprovalPolicy(
            mode=self.approval_mode,
            rules=ApprovalRules(
                force=self.approval_force,
                shared_disk=self.approval_shared_disk,
                system_disk_stopped=self.approval_system_disk_stopped,
                server_tags=self.approval_server_tags,
                projects=self.approval_projects,
                max_disks_per_server=self.approval_max_disks_per_server,
                window_s=self.approval_window_s,
            ),
            expiry_s=self.approval_expiry_s,
        )

    def poll_schedule(self) -> PollSchedule:
        return PollSchedule(
            first_delay_s=self.first_poll_s,
            factor=self.poll_factor,
            min_delay_s=self.min_poll_delay_s,
            max_delay_s=self.max_poll_delay_s,
        )

    def history_url(self) -> str | None:
        """The history's URL, or None when it is turned off (``ECS_DETACH_HISTORY=off``)."""
        url = self.history.strip()
        return None if url.lower() == HISTORY_OFF else url

    def worker_budget_s(self) -> float:
        """What a worker may spend on one delivery: settled well before its lease runs out."""
        return max(self.visibility_timeout_s - 5.0, 1.0)

    def policy(self) -> SafetyPolicy:
        return SafetyPolicy(
            allowed_projects=self.allowed_projects,
            allowed_servers=self.allowed_servers,
            required_tag=self.required_tag,
            allow_system_disk_when_stopped=self.allow_system_disk_when_stopped,
            allow_shared_disks=self.allow_shared_disks,
            allow_force=self.allow_force,
        )

    def smn_url(self) -> str | None:
        """The SMN endpoint: explicit, else from region and cloud, else the ECS URL (the emulator)."""
        return self._service_url("smn", self.smn_endpoint)

    def evs_url(self) -> str | None:
        """The EVS endpoint: explicit, else from region and cloud, else the ECS URL (the emulator)."""
        return self._service_url("evs", self.evs_endpoint)

    def _service_url(self, service: str, explicit: str | None) -> str | None:
        """Explicit URL > derived from region (and cloud) > the ECS URL. An explicit ECS endpoint
        next to a region is an ECS VPC endpoint or proxy, which serves ECS only: EVS and SMN
        follow the region. Only without a region (the emulator) do they share the ECS URL."""
        if explicit:
            return explicit.rstrip("/")
        if self.region:
            return endpoint(service, self.region, self.cloud)
        return self.ecs_url()

    def ecs_url(self) -> str | None:
        """The ECS endpoint: explicit, else derived from region and cloud, else None."""
        if self.ecs_endpoint:
            return self.ecs_endpoint.rstrip("/")
        return endpoint("ecs", self.region, self.cloud) if self.region else None

"""Typed configuration from the environment (``handler/support/env_settings.py``).

``ECS_DETACH_*`` configures the functions; cloud credentials use the official SDKs' names
(``HUAWEICLOUD_SDK_AK``, ``HUAWEICLOUD_SDK_SK``, ``HUAWEICLOUD_SDK_PROJECT_ID``,
``HUAWEICLOUD_SDK_SECURITY_TOKEN``). The README's configuration table mirrors this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator

from handler.cloud import CloudName, Credentials, endpoint
from handler.core.approval_policy import ApprovalPolicy, ApprovalRules
from handler.core.policy import SafetyPolicy
from handler.core.polling import PollSchedule
from handler.functions.channel_config import OUTCOMES, ChannelConfig
from handler.security import DEFAULT_SMN_CERT_HOSTS, HUAWEI_SMN_SUBJECT, ConsoleUser, WebhookCredential
from handler.sources._labels import LabelNames
from handler.support.env_settings import EnvSettings

if TYPE_CHECKING:
    from handler.security import WebhookAuthConfig

DEFAULT_TOPICS_DB = "sqlite:///.ecs-detach/topics.db"
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


class Settings(EnvSettings):
    """``ECS_DETACH_*``."""

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
    approval_expiry_s: float = Field(
        default=3600.0, gt=0, description="Undecided for this long: rejected (ApprovalExpired)"
    )
    approval_link_secret: SecretStr | None = Field(
        default=None, description="HMAC key of the signed approval links (at least 32 characters)"
    )
    approval_base_url: str | None = Field(
        default=None, description="Public URL of the webhook endpoint, for links in events and messages"
    )
    # Notifications (handler/functions/notify.py, docs/notifications.md).
    notify_channels: list[ChannelConfig] = Field(
        default=[],
        description="JSON list of channels: {name, kind, url, secret, topic_urn, outcomes}",
    )
    notify_outcomes: list[str] = Field(
        default_factory=lambda: ["approval_requested", "succeeded", "failed", "timed_out", "rejected"],
        description="The outcomes sent to a channel that names none",
    )
    notify_templates: Path | None = Field(
        default=None, description="Folder of {outcome}.txt.j2 templates replacing the built-in ones"
    )
    chat_approvers: dict[str, dict[str, str]] = Field(
        default={},
        description='Who may click in which chat: {"slack:C0123": {"U0456": "alice"}}',
    )
    slack_signing_secret: SecretStr | None = Field(default=None, description="Verifies Slack's button clicks")
    feishu_encrypt_key: SecretStr | None = Field(default=None, description="Verifies Feishu/Lark card clicks")
    feishu_verification_token: SecretStr | None = Field(
        default=None, description="The Feishu/Lark app's verification token (checked too)"
    )
    max_body_bytes: int = Field(default=256 * 1024, gt=0, description="Larger webhook bodies get 413")
    max_records: int = Field(
        default=100, ge=1, description="Records (alerts, tickets, events) per request or event; more get 413"
    )
    max_cloud_calls: int = Field(
        default=400, ge=1, description="Cloud calls (policy reads and detaches, tries included) per request"
    )
    # The webhook server of `up` (handler/local/_serve.py, http.py): what a slow client may hold.
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, description="A request's head must arrive within this, else the connection closes"
    )
    http_body_timeout_s: float = Field(
        default=30.0, gt=0, description="A body must arrive within this, else 408"
    )
    http_max_connections: int = Field(
        default=100, ge=1, description="Connections served at once; a request on one more gets 503"
    )
    http_keep_alive_s: int = Field(
        default=5, ge=1, description="An idle kept-alive connection closes after this"
    )
    alert_labels: LabelNames = Field(
        default_factory=LabelNames, description="Alert label names for each request field (JSON)"
    )
    ticket_mappings: Path | None = Field(default=None, description="JSON file of extra ticket mappings")
    smn_confirm_hosts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SMN_CERT_HOSTS),
        description="Hosts (patterns) whose SMN subscribe_url may be fetched to confirm (JSON list)",
    )
    # Webhook authentication (handler/security): every list takes several secrets, for rotation;
    # an entry is a secret (every route) or {"secret": …, "routes": […]} (handler/security/_scopes.py).
    webhook_auth_disabled: bool = Field(default=False, description="Accept unauthenticated webhooks")
    webhook_bearer_tokens: list[WebhookCredential] = Field(default=[])
    webhook_basic_credentials: list[WebhookCredential] = Field(default=[])
    webhook_hmac_secrets: list[WebhookCredential] = Field(default=[])
    webhook_standard_secrets: list[WebhookCredential] = Field(default=[])
    webhook_hmac_require_timestamp: bool = False
    webhook_replay_window_s: int = Field(default=300, gt=0, le=86400)
    webhook_verify_smn: bool = True
    smn_cert_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_SMN_CERT_HOSTS))
    smn_cert_ca_file: Path | None = Field(
        default=None, description="PEM trust anchors for SMN signing certificates"
    )
    smn_cert_subjects: list[str] = Field(default_factory=lambda: [HUAWEI_SMN_SUBJECT])
    # The web console (/console, docs/console.md): its people, and the key of its CSRF tokens.
    console_users: list[ConsoleUser] = Field(
        default=[], description='JSON list: {"name", "password_hash": "scrypt:…", "approve"}'
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description="Key of the console's form tokens, shared by instances (default: random per process)",
    )

    @model_validator(mode="after")
    def _delays_ordered(self) -> Settings:
        self.poll_schedule()  # raises ValueError with the reason
        self.approval_policy()  # "rules" without a rule
        unknown = set(self.notify_outcomes) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"notify_outcomes: unknown {sorted(unknown)}; use {', '.join(OUTCOMES)}")
        names = [channel.name for channel in self.notify_channels]
        if len(set(names)) != len(names):
            raise ValueError("notify_channels: every channel needs its own name")
        secret = self.approval_link_secret
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError(
                "approval_link_secret must be at least 32 characters (256 bits of a random token)"
            )
        if self.console_secret is not None and len(self.console_secret.get_secret_value()) < 32:
            raise ValueError("console_secret must be at least 32 characters (256 bits of a random token)")
        users = [user.name for user in self.console_users]
        if len(set(users)) != len(users):
            raise ValueError("console_users: every user needs their own name")
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

    def webhook_auth(self) -> WebhookAuthConfig:
        from handler.security import WebhookAuthConfig  # noqa: PLC0415 (only webhooks need it)

        return WebhookAuthConfig(
            disabled=self.webhook_auth_disabled,
            bearer_tokens=self.webhook_bearer_tokens,
            basic_credentials=self.webhook_basic_credentials,
            hmac_secrets=self.webhook_hmac_secrets,
            standard_webhooks_secrets=self.webhook_standard_secrets,
            hmac_require_timestamp=self.webhook_hmac_require_timestamp,
            replay_window_s=self.webhook_replay_window_s,
            smn_cert_hosts=self.smn_cert_hosts,
            smn_cert_ca_file=self.smn_cert_ca_file,
            smn_cert_subjects=self.smn_cert_subjects,
            verify_smn=self.webhook_verify_smn,
            jobs_topic_urn=(
                self.jobs_topic.removeprefix("smn://") if self.jobs_topic.startswith("smn://") else None
            ),
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

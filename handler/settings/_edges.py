"""``Settings``: the functions' settings and what the edges read from ``ECS_DETACH_*``: the
webhook routes and their authentication, notifications, chat buttons, the console and the HTTP
server of ``up``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, model_validator

from handler.functions.channel_config import OUTCOMES, ChannelConfig
from handler.security import DEFAULT_SMN_CERT_HOSTS, HUAWEI_SMN_SUBJECT, ConsoleUser, WebhookCredential
from handler.settings._functions import FunctionSettings
from handler.sources._labels import LabelNames

if TYPE_CHECKING:
    from handler.security import WebhookAuthConfig


class Settings(FunctionSettings):
    """``ECS_DETACH_*``: everything, the functions' settings first."""

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
    def _edges_consistent(self) -> Settings:
        unknown = set(self.notify_outcomes) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"notify_outcomes: unknown {sorted(unknown)}; use {', '.join(OUTCOMES)}")
        names = [channel.name for channel in self.notify_channels]
        if len(set(names)) != len(names):
            raise ValueError("notify_channels: every channel needs its own name")
        if self.console_secret is not None and len(self.console_secret.get_secret_value()) < 32:
            raise ValueError("console_secret must be at least 32 characters (256 bits of a random token)")
        users = [user.name for user in self.console_users]
        if len(set(users)) != len(users):
            raise ValueError("console_users: every user needs their own name")
        return self

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

"""A notify channel as configured (``ECS_DETACH_NOTIFY_CHANNELS``), and the outcomes a channel
may take: what the settings validate on every cold start, apart from the senders
(``handler.functions.channels``), which only the notify function loads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Kind = Literal["slack", "teams", "feishu", "dingtalk", "wecom", "smn"]
OUTCOMES = ("approval_requested", "succeeded", "failed", "timed_out", "rejected", "already_detached")


class ChannelConfig(BaseModel):
    """One destination (``ECS_DETACH_NOTIFY_CHANNELS`` is a JSON list of these)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Unique; names the channel in logs")
    kind: Kind
    url: SecretStr | None = Field(default=None, description="The incoming webhook URL (it is a secret)")
    secret: SecretStr | None = Field(default=None, description="Feishu/DingTalk signing secret")
    topic_urn: str | None = Field(default=None, description="SMN: the topic to publish to")
    outcomes: list[str] | None = Field(default=None, description="Default: ECS_DETACH_NOTIFY_OUTCOMES")

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        if self.kind == "smn":
            if not self.topic_urn:
                raise ValueError("an smn channel needs topic_urn")
        elif self.url is None or not self.url.get_secret_value().startswith(("https://", "http://")):
            raise ValueError(f"a {self.kind} channel needs url, its incoming webhook URL (https://…)")
        if self.secret is not None and self.kind not in ("feishu", "dingtalk"):
            raise ValueError("secret (message signing) is for feishu and dingtalk channels")
        unknown = set(self.outcomes or ()) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}: use {', '.join(OUTCOMES)}")
        return self

"""The notify and approval settings refuse what cannot work, naming the setting and never
echoing a secret."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from handler.settings import Settings

HOOK = "https://hooks.slack.com/services/T000/B000/very-secret-part"


@pytest.mark.parametrize(
    ("channels", "reason"),
    [
        ([{"name": "ops", "kind": "slack"}], "needs url"),
        ([{"name": "ops", "kind": "smn"}], "needs topic_urn"),
        ([{"name": "ops", "kind": "slack", "url": HOOK, "secret": "s"}], "for feishu and dingtalk"),
        ([{"name": "ops", "kind": "slack", "url": HOOK, "outcomes": ["done"]}], "unknown outcomes"),
        ([{"name": "Ops!", "kind": "slack", "url": HOOK}], "name"),
        ([{"name": "ops", "kind": "slack", "url": HOOK}] * 2, "its own name"),
        ([{"name": "ops", "kind": "telegram", "url": HOOK}], "kind"),
    ],
)
def test_a_channel_that_cannot_work_is_refused(
    monkeypatch: pytest.MonkeyPatch, channels: list[dict[str, object]], reason: str
) -> None:
    monkeypatch.setenv("ECS_DETACH_NOTIFY_CHANNELS", json.dumps(channels))
    with pytest.raises(ValidationError, match=reason) as refused:
        Settings()
    assert "very-secret-part" not in str(refused.value)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"ECS_DETACH_APPROVAL_MODE": "rules"}, "at least one rule"),
        ({"ECS_DETACH_APPROVAL_MODE": "sometimes"}, "approval_mode"),
        ({"ECS_DETACH_APPROVAL_LINK_SECRET": "short"}, "at least 32 characters"),
        ({"ECS_DETACH_NOTIFY_OUTCOMES": '["succeeded", "exploded"]'}, "exploded"),
    ],
)
def test_approval_and_outcome_settings_that_cannot_work(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=reason) as refused:
        Settings()
    assert "'short'" not in str(refused.value)  # the secret given is not echoed


def test_rules_with_a_rule_build_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_DETACH_APPROVAL_MODE", "rules")
    monkeypatch.setenv("ECS_DETACH_APPROVAL_SERVER_TAGS", '["env=prod"]')
    monkeypatch.setenv("ECS_DETACH_APPROVAL_EXPIRY_S", "900")

    policy = Settings().approval_policy()

    assert (policy.mode, policy.rules.server_tags, policy.expiry_s) == ("rules", ["env=prod"], 900.0)

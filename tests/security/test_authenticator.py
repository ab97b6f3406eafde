"""The router's entry point: which scheme applies where, secure defaults, the banner, the config."""

from __future__ import annotations

import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from handler.security import Unauthenticated, WebhookAuthConfig, WebhookAuthenticator
from tests.security.conftest import anchors, certificate
from tests.security.smn import CERT_URL, Fetcher, notification
from tests.security.support import BODY, FORMS, NOW, Clock, authenticator

TOKEN = "tok-3e8f1a2b9c"
ROUTES = ["/", "/alertmanager", "/grafana", "/smn", "/tickets/jira"]


def smn_auth(key: rsa.RSAPrivateKey, **config: object) -> WebhookAuthenticator:
    fetcher = Fetcher({CERT_URL: certificate(key)})
    return WebhookAuthenticator(
        WebhookAuthConfig.model_validate(config), fetch=fetcher, clock=Clock(), trust=anchors()
    )


@pytest.mark.parametrize("route", ROUTES)
def test_nothing_configured_refuses_every_request_and_names_the_settings(route: str) -> None:
    auth = authenticator(verify_smn=False)
    with pytest.raises(Unauthenticated, match="ECS_DETACH_WEBHOOK_BEARER_TOKENS") as refused:
        auth.check(route, {"authorization": f"Bearer {TOKEN}"}, BODY)
    assert "not configured, every request is refused" in refused.value.reason
    assert "ECS_DETACH_WEBHOOK_AUTH_DISABLED" in refused.value.reason


def test_by_default_only_signed_smn_messages_pass(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = smn_auth(rsa_key)
    assert auth.check("/smn/", {}, json.dumps(notification(rsa_key)).encode()) == "smn-signature"
    with pytest.raises(Unauthenticated, match=r"/smn accepts signed SMN messages only.*ECS_DETACH_WEBHOOK_"):
        auth.check("/smn", {}, BODY)
    with pytest.raises(Unauthenticated, match="every request is refused"):
        auth.check("/alertmanager", {}, json.dumps(notification(rsa_key)).encode())


@pytest.mark.parametrize("route", ROUTES)
def test_disabled_accepts_everything_and_warns_once(route: str, records: list[logging.LogRecord]) -> None:
    auth = authenticator(disabled=True, bearer_tokens=[TOKEN])
    for _ in range(3):
        assert auth.check(route, {}, b"not even json") == "disabled"
        assert auth.check(route, {"authorization": "Bearer wrong"}, BODY) == "disabled"
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "webhook authentication is disabled" in str(vars(warnings[0]))
    assert "DISABLED" in auth.describe()


def test_any_configured_scheme_that_verifies_is_enough() -> None:
    form = FORMS["github"]
    auth = authenticator(bearer_tokens=[TOKEN], hmac_secrets=[form.old])
    signed = form.sign(form.old, BODY, NOW)
    assert auth.check("/", {"authorization": "Bearer wrong", **signed}, BODY) == "hmac-github"
    wrong = form.sign(form.wrong, BODY, NOW)
    with pytest.raises(Unauthenticated) as refused:
        auth.check("/", {"authorization": "Bearer wrong", **wrong}, BODY)
    reasons = "the bearer token is not accepted; X-Hub-Signature-256 does not match the body"
    assert refused.value.reason == reasons


def test_headers_of_an_unconfigured_scheme_do_not_count() -> None:
    form = FORMS["github"]
    auth = authenticator(bearer_tokens=[TOKEN])
    with pytest.raises(Unauthenticated, match="no credentials: send one of: Authorization: Bearer"):
        auth.check("/", form.sign(form.old, BODY, NOW), BODY)


def test_header_names_are_case_insensitive() -> None:
    form = FORMS["generic"]
    mixed = {name.title(): value for name, value in form.sign(form.old, BODY, NOW).items()}
    assert authenticator(hmac_secrets=[form.old]).check("/", mixed, BODY) == "hmac-generic"


def test_on_smn_a_claimed_smn_message_must_pass_the_smn_check(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = smn_auth(rsa_key, bearer_tokens=[TOKEN])
    bearer = {"authorization": f"Bearer {TOKEN}"}
    forged = {**notification(rsa_key), "message": '{"alarm_status": "alarm", "forged": true}'}
    with pytest.raises(Unauthenticated, match="SMN signature does not match"):
        auth.check("/smn", bearer, json.dumps(forged).encode())
    unsigned = {key: value for key, value in forged.items() if key not in ("signature", "signing_cert_url")}
    with pytest.raises(Unauthenticated, match="has no signing_cert_url"):
        auth.check("/smn", {**bearer, "x-smn-message-type": "Notification"}, json.dumps(unsigned).encode())


def test_on_smn_other_schemes_count_for_a_request_that_is_no_smn_message(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = smn_auth(rsa_key, bearer_tokens=[TOKEN])
    unsigned = {key: value for key, value in notification(rsa_key).items() if key != "signature"}
    del unsigned["signing_cert_url"]
    body = json.dumps(unsigned).encode()
    assert auth.check("/smn", {"authorization": f"Bearer {TOKEN}"}, body) == "bearer"
    with pytest.raises(Unauthenticated, match="no credentials"):
        auth.check("/smn", {}, body)


def test_without_verify_smn_smn_messages_need_another_scheme(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = smn_auth(rsa_key, verify_smn=False, bearer_tokens=[TOKEN])
    body = json.dumps(notification(rsa_key)).encode()
    with pytest.raises(Unauthenticated, match="no credentials"):
        auth.check("/smn", {}, body)
    assert auth.check("/smn", {"authorization": f"Bearer {TOKEN}"}, body) == "bearer"


def test_smn_signatures_count_on_smn_only(rsa_key: rsa.RSAPrivateKey) -> None:
    auth = smn_auth(rsa_key, bearer_tokens=[TOKEN])
    with pytest.raises(Unauthenticated, match="no credentials"):
        auth.check("/alertmanager", {}, json.dumps(notification(rsa_key)).encode())


def test_describe_names_schemes_and_counts_only() -> None:
    auth = authenticator(
        bearer_tokens=[TOKEN, "tok-2"],
        basic_credentials=["am:pw"],
        hmac_secrets=["h-1"],
        standard_webhooks_secrets=[FORMS["standard"].old],
        replay_window_s=120,
    )
    assert auth.describe() == (
        "webhook authentication: bearer ×2, basic ×1, hmac (GitHub, Grafana, generic) ×1, "
        "standard-webhooks ×1, smn-signature on /smn (4 certificate host patterns); replay window 120 s"
    )
    assert "smn-signature on /smn (4 certificate host patterns) only" in authenticator().describe()
    assert "nothing configured" in authenticator(verify_smn=False).describe()


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"bearer_tokens": ["S3CR3T-token", "  "]}, "entry 1 is empty"),
        ({"basic_credentials": ["S3CR3T-user-no-password"]}, "entry 0 is not user:password"),
        ({"basic_credentials": [":S3CR3T-password"]}, "entry 0 is not user:password"),
        ({"standard_webhooks_secrets": ["whsec_"]}, "entry 0 is not a whsec_"),
        ({"replay_window_s": 0, "hmac_secrets": ["S3CR3T-hmac"]}, "greater than 0"),
        ({"smn_cert_hosts": ["smn.*.example", " "]}, "entry 1 is empty"),
    ],
)
def test_bad_config_is_refused_without_echoing_secrets(config: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        WebhookAuthConfig.model_validate(config)
    assert problem in str(refused.value)
    assert "S3CR3T" not in f"{refused.value} {refused.value!r} {refused.value.errors(include_input=False)}"

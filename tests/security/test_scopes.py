"""Credentials scoped to routes: a plain secret calls every route, an object names its routes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from handler.security import Forbidden, Unauthenticated, WebhookAuthConfig, WebhookAuthenticator
from handler.settings import Settings
from tests.security.conftest import anchors, certificate
from tests.security.smn import CERT_URL, Fetcher, notification
from tests.security.support import BODY, FORMS, NOW, Clock, authenticator

AM_TOKEN, ALL_TOKEN = "tok-am-3c9e1f", "tok-all-7a2b5d"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_scoped_token_calls_its_routes_only() -> None:
    auth = authenticator(bearer_tokens=[{"secret": AM_TOKEN, "routes": ["/alertmanager"]}, ALL_TOKEN])
    assert auth.check("/alertmanager", bearer(AM_TOKEN), BODY) == "bearer"
    assert auth.check("/alertmanager/", bearer(AM_TOKEN), BODY) == "bearer"
    for route in ("/tickets/jira", "/", "/grafana", "/smn"):
        with pytest.raises(Forbidden, match=f"may call /alertmanager, not {route}") as refused:
            auth.check(route, bearer(AM_TOKEN), BODY)
        assert AM_TOKEN not in refused.value.reason
        assert auth.check(route, bearer(ALL_TOKEN), BODY) == "bearer"  # a plain secret: every route


def test_ticket_scopes_name_one_mapping_or_all() -> None:
    auth = authenticator(
        basic_credentials=[
            {"secret": "jira:pw-1", "routes": ["/tickets/jira"]},
            {"secret": "desk:pw-2", "routes": ["/tickets/*"]},
        ]
    )

    def basic(pair: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    assert auth.check("/tickets/jira", basic("jira:pw-1"), BODY) == "basic"
    with pytest.raises(Forbidden):
        auth.check("/tickets/servicenow", basic("jira:pw-1"), BODY)
    assert auth.check("/tickets/servicenow", basic("desk:pw-2"), BODY) == "basic"
    with pytest.raises(Forbidden):
        auth.check("/alertmanager", basic("desk:pw-2"), BODY)


@pytest.mark.parametrize("name", ["github", "grafana", "generic", "standard"])
def test_signed_forms_are_scoped_too(name: str) -> None:
    form = FORMS[name]
    config: dict[str, Any] = {form.field: [{"secret": form.old, "routes": ["/grafana"]}, form.new]}
    auth = authenticator(**config)
    assert auth.check("/grafana", form.sign(form.old, BODY, NOW), BODY) == form.scheme
    with pytest.raises(Forbidden):
        auth.check("/", form.sign(form.old, BODY, NOW), BODY)
    assert auth.check("/", form.sign(form.new, BODY, NOW), BODY) == form.scheme


def test_a_wrong_secret_stays_unauthenticated_not_forbidden() -> None:
    auth = authenticator(bearer_tokens=[{"secret": AM_TOKEN, "routes": ["/alertmanager"]}])
    with pytest.raises(Unauthenticated) as refused:
        auth.check("/tickets/jira", bearer("tok-wrong"), BODY)
    assert not isinstance(refused.value, Forbidden)


def test_poll_is_never_implied() -> None:
    auth = authenticator(bearer_tokens=[ALL_TOKEN, {"secret": AM_TOKEN, "routes": ["/smn", "poll"]}])
    with pytest.raises(Forbidden, match="may call every route but poll, /approvals and /console, not poll"):
        auth.check("poll", bearer(ALL_TOKEN), BODY)
    assert auth.check("poll", bearer(AM_TOKEN), BODY) == "bearer"


def test_approvals_are_never_implied_and_a_credential_names_its_identity() -> None:
    named = {"secret": AM_TOKEN, "routes": ["/approvals"], "name": "alice"}
    auth = authenticator(bearer_tokens=[ALL_TOKEN, named], basic_credentials=["carol:pw-123"])
    with pytest.raises(Forbidden, match="not /approvals"):
        auth.check("/approvals", bearer(ALL_TOKEN), BODY)
    assert auth.authenticate("/approvals", bearer(AM_TOKEN), BODY).identity == "alice"
    unnamed = auth.authenticate("/", bearer(ALL_TOKEN), BODY).identity
    assert unnamed is not None
    assert unnamed.startswith("bearer:")
    assert ALL_TOKEN not in unnamed
    assert unnamed == auth.authenticate("/grafana", bearer(ALL_TOKEN), BODY).identity  # one identity
    basic = {"authorization": "Basic " + base64.b64encode(b"carol:pw-123").decode()}
    assert auth.authenticate("/", basic, BODY).identity == "basic:carol"


@pytest.mark.parametrize("name", ["", "has space", ":starts-with-colon", "x" * 129])
def test_a_credential_name_must_be_one_word(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        WebhookAuthConfig(bearer_tokens=[{"secret": "S3CR3T-1", "name": name}])


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"secret": "S3CR3T-1", "routes": ["/alertmanagr"]}, "routes[0] '/alertmanagr' is no route"),
        ({"secret": "S3CR3T-1", "routes": []}, "an empty routes list allows nothing"),
        ({"secret": "S3CR3T-1", "route": ["/"]}, "Extra inputs are not permitted"),
        ({"routes": ["/"]}, "Field required"),
    ],
)
def test_bad_scopes_are_refused_without_echoing_the_secret(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        WebhookAuthConfig.model_validate({"bearer_tokens": [entry]})
    assert problem in str(refused.value)
    assert "S3CR3T" not in f"{refused.value} {refused.value!r}"


def test_the_environment_takes_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [ALL_TOKEN, {"secret": AM_TOKEN, "routes": ["/alertmanager"]}]
    monkeypatch.setenv("ECS_DETACH_WEBHOOK_BEARER_TOKENS", json.dumps(entries))
    config = Settings().webhook_auth()
    assert [c.routes for c in config.bearer_tokens] == [None, ("/alertmanager",)]
    assert AM_TOKEN not in repr(config)
    assert ALL_TOKEN not in repr(config)
    auth = WebhookAuthenticator(config)
    assert auth.check("/alertmanager", bearer(AM_TOKEN), BODY) == "bearer"
    with pytest.raises(Forbidden):
        auth.check("/tickets/jira", bearer(AM_TOKEN), BODY)


JOBS = "urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:ecs-detach-jobs"


def test_only_the_jobs_topics_smn_signature_may_poll(rsa_key: rsa.RSAPrivateKey) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key)})
    config = WebhookAuthConfig(jobs_topic_urn=JOBS, bearer_tokens=[ALL_TOKEN])
    auth = WebhookAuthenticator(config, fetch=fetcher, clock=Clock(), trust=anchors())
    from_jobs = json.dumps(notification(rsa_key, topic_urn=JOBS)).encode()
    assert auth.check("poll", {}, from_jobs) == "smn-signature"
    from_alarms = json.dumps(notification(rsa_key)).encode()  # signed, but for another topic
    assert auth.check("/smn", {}, from_alarms) == "smn-signature"
    with pytest.raises(Forbidden, match="only the jobs topic's SMN messages"):
        auth.check("poll", {}, from_alarms)
    without_jobs_topic = WebhookAuthenticator(
        WebhookAuthConfig(), fetch=fetcher, clock=Clock(), trust=anchors()
    )
    with pytest.raises(Forbidden):
        without_jobs_topic.check("poll", {}, from_jobs)


def test_the_jobs_topic_urn_comes_from_the_jobs_topic_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECS_DETACH_JOBS_TOPIC", f"smn://{JOBS}")
    assert Settings().webhook_auth().jobs_topic_urn == JOBS
    monkeypatch.setenv("ECS_DETACH_JOBS_TOPIC", "redis://127.0.0.1:6379/0?topic=jobs")
    assert Settings().webhook_auth().jobs_topic_urn is None


def test_the_console_is_never_implied() -> None:
    console = {"secret": AM_TOKEN, "routes": ["/console"], "name": "dashboard"}
    auth = authenticator(bearer_tokens=[ALL_TOKEN, console])
    with pytest.raises(Forbidden, match="not /console"):
        auth.check("/console", bearer(ALL_TOKEN), BODY)
    assert auth.authenticate("/console", bearer(AM_TOKEN), BODY).identity == "dashboard"
    with pytest.raises(Forbidden, match="not /approvals"):  # reading is not deciding
        auth.check("/approvals", bearer(AM_TOKEN), BODY)

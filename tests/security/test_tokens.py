"""Bearer tokens and basic auth, as Alertmanager's http_config sends them."""

from __future__ import annotations

import base64

import pytest

from handler.security import Unauthenticated, generate_local_secret
from tests.security.support import BODY, authenticator

OLD, NEW, WRONG = "tok-old-5b1f0e9a", "tok-new-8c2d7f3b", "tok-wrong-1a9e4c6d"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def basic(pair: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def test_a_configured_bearer_token_is_accepted() -> None:
    auth = authenticator(bearer_tokens=[OLD])
    assert auth.check("/alertmanager", bearer(OLD), BODY) == "bearer"
    assert auth.check("/alertmanager", {"Authorization": f"bearer  {OLD} "}, BODY) == "bearer"


def test_a_wrong_or_empty_bearer_token_is_refused() -> None:
    auth = authenticator(bearer_tokens=[OLD])
    for headers in (bearer(WRONG), bearer(OLD[:-1]), bearer(OLD + "x"), {"authorization": "Bearer"}):
        with pytest.raises(Unauthenticated, match="bearer token is not accepted"):
            auth.check("/", headers, BODY)


def test_bearer_rotation() -> None:
    both = authenticator(bearer_tokens=[OLD, NEW])
    assert both.check("/", bearer(OLD), BODY) == both.check("/", bearer(NEW), BODY) == "bearer"
    after = authenticator(bearer_tokens=[NEW])
    assert after.check("/", bearer(NEW), BODY) == "bearer"
    with pytest.raises(Unauthenticated):
        after.check("/", bearer(OLD), BODY)


def test_a_missing_authorization_header_is_refused_with_what_to_send() -> None:
    auth = authenticator(bearer_tokens=[OLD], basic_credentials=["am:pw-1"])
    with pytest.raises(Unauthenticated, match="send one of: Authorization: Bearer; Authorization: Basic"):
        auth.check("/", {}, BODY)
    with pytest.raises(Unauthenticated, match="no credentials"):
        auth.check("/", {"authorization": f"Token {OLD}"}, BODY)


def test_basic_auth_pairs_and_rotation() -> None:
    both = authenticator(basic_credentials=["alertmanager:pw-old-4e1d", "alertmanager:pw-new-9a7c"])
    assert both.check("/alertmanager", basic("alertmanager:pw-old-4e1d"), BODY) == "basic"
    assert both.check("/alertmanager", basic("alertmanager:pw-new-9a7c"), BODY) == "basic"
    after = authenticator(basic_credentials=["alertmanager:pw-new-9a7c"])
    for pair in ("alertmanager:pw-old-4e1d", "other:pw-new-9a7c", "alertmanager:", "alertmanager"):
        with pytest.raises(Unauthenticated, match="user and password are not accepted"):
            after.check("/alertmanager", basic(pair), BODY)


def test_a_password_may_contain_colons() -> None:
    auth = authenticator(basic_credentials=["am:p:a:ss"])
    assert auth.check("/", basic("am:p:a:ss"), BODY) == "basic"


def test_malformed_basic_credentials_are_refused() -> None:
    auth = authenticator(basic_credentials=["am:pw"])
    with pytest.raises(Unauthenticated, match="not base64"):
        auth.check("/", {"authorization": "Basic am:pw"}, BODY)


def test_the_local_secret_is_random_and_works_as_a_bearer_token() -> None:
    secret = generate_local_secret()
    assert len(secret) >= 43
    assert secret != generate_local_secret()
    assert authenticator(bearer_tokens=[secret]).check("/", bearer(secret), BODY) == "bearer"

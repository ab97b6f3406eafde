"""HMAC (GitHub, Grafana, generic) and Standard Webhooks: signatures over the raw body and time."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from handler.security import Unauthenticated
from tests.security.support import BODY, FORMS, NOW, STANDARD, TIMED, UNTIMED, Clock, Form, authenticator

WINDOW = 300
ALL = pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
TIMED_ONLY = pytest.mark.parametrize("form", TIMED.values(), ids=TIMED.keys())
UNTIMED_ONLY = pytest.mark.parametrize("form", UNTIMED.values(), ids=UNTIMED.keys())


def refusal(form: Form, headers: dict[str, str], body: bytes = BODY, *secrets: str, now: float = NOW) -> str:
    auth = authenticator(Clock(now), **form.config(*(secrets or (form.old,))))
    with pytest.raises(Unauthenticated) as refused:
        auth.check("/alertmanager", headers, body)
    return refused.value.reason


@ALL
def test_a_valid_signature_is_accepted_and_named(form: Form) -> None:
    auth = authenticator(**form.config(form.old))
    assert auth.check("/alertmanager", form.sign(form.old, BODY, NOW), BODY) == form.scheme


@ALL
def test_a_signature_under_another_secret_is_refused_without_the_expected_value(form: Form) -> None:
    reason = refusal(form, form.sign(form.wrong, BODY, NOW))
    assert "does not match" in reason
    expected = [value for name, value in form.sign(form.old, BODY, NOW).items() if "signature" in name]
    assert expected
    assert all(value.removeprefix("sha256=").removeprefix("v1,") not in reason for value in expected)


@ALL
def test_a_tampered_body_is_refused(form: Form) -> None:
    headers = form.sign(form.old, BODY, NOW)
    assert "does not match" in refusal(form, headers, BODY.replace(b"aaaa", b"bbbb"))


@ALL
def test_rotation_accepts_old_and_new_while_both_are_configured(form: Form) -> None:
    both = authenticator(**form.config(form.old, form.new))
    assert both.check("/grafana", form.sign(form.old, BODY, NOW), BODY) == form.scheme
    assert both.check("/grafana", form.sign(form.new, BODY, NOW), BODY) == form.scheme
    after = authenticator(**form.config(form.new))
    assert after.check("/grafana", form.sign(form.new, BODY, NOW), BODY) == form.scheme
    with pytest.raises(Unauthenticated, match="does not match"):
        after.check("/grafana", form.sign(form.old, BODY, NOW), BODY)


@ALL
def test_each_missing_header_is_refused(form: Form) -> None:
    headers = form.sign(form.old, BODY, NOW)
    for name in headers:
        partial = {key: value for key, value in headers.items() if key != name}
        assert refusal(form, partial)


@TIMED_ONLY
@pytest.mark.parametrize("offset", [-WINDOW, 0, WINDOW])
def test_a_timestamp_within_the_window_is_accepted(form: Form, offset: int) -> None:
    auth = authenticator(**form.config(form.old, replay_window_s=WINDOW))
    assert auth.check("/", form.sign(form.old, BODY, NOW + offset), BODY) == form.scheme


@TIMED_ONLY
def test_a_stale_timestamp_is_refused(form: Form) -> None:
    assert "older than the 300 s" in refusal(form, form.sign(form.old, BODY, NOW - WINDOW - 1))


@TIMED_ONLY
def test_a_future_timestamp_is_refused(form: Form) -> None:
    assert "in the future" in refusal(form, form.sign(form.old, BODY, NOW + WINDOW + 1))


@TIMED_ONLY
def test_a_replay_after_the_window_is_refused(form: Form) -> None:
    clock = Clock()
    auth = authenticator(clock, **form.config(form.old))
    headers = form.sign(form.old, BODY, NOW)
    assert auth.check("/", headers, BODY) == form.scheme
    clock.now = NOW + WINDOW + 1
    with pytest.raises(Unauthenticated, match="older than"):
        auth.check("/", headers, BODY)


@TIMED_ONLY
def test_a_timestamp_must_be_unix_seconds(form: Form) -> None:
    milliseconds = form.sign(form.old, BODY, NOW * 1000)
    assert "Unix time in seconds" in refusal(form, milliseconds)
    worded = {
        name: "soon" if value == str(NOW) else value for name, value in form.sign(form.old, BODY, NOW).items()
    }
    assert "Unix time in seconds" in refusal(form, worded)


@UNTIMED_ONLY
def test_untimed_forms_have_no_replay_window_unless_timestamps_are_required(form: Form) -> None:
    clock = Clock()
    headers = form.sign(form.old, BODY, NOW)
    auth = authenticator(clock, **form.config(form.old))
    clock.now = NOW + 30 * 86400
    assert auth.check("/", headers, BODY) == form.scheme  # documented: GitHub signs no time
    strict = authenticator(**form.config(form.old, hmac_require_timestamp=True))
    with pytest.raises(Unauthenticated, match="timestamp"):
        strict.check("/", headers, BODY)


def test_grafana_timestamp_cannot_be_dropped_from_a_timed_signature() -> None:
    form = FORMS["grafana"]
    headers = form.sign(form.old, BODY, NOW)
    del headers["x-grafana-alerting-timestamp"]
    assert "does not match" in refusal(form, headers)


def test_grafana_code_default_header_name_is_accepted() -> None:
    form = FORMS["grafana"]
    headers = form.sign(form.old, BODY, NOW)
    headers["x-grafana-alert-signature"] = headers.pop("x-grafana-alerting-signature")
    assert authenticator(**form.config(form.old)).check("/grafana", headers, BODY) == "hmac-grafana"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-hub-signature-256": "sha1=" + "0" * 40}, "X-Hub-Signature-256 must be sha256=<hex>"),
        ({"x-hub-signature-256": "sha256=zz"}, "X-Hub-Signature-256 is not a hex HMAC-SHA256"),
        ({"x-signature": "0" * 64, "x-timestamp": str(NOW)}, "X-Signature must be sha256=<hex>"),
        ({"x-grafana-alerting-signature": "sha256=" + "0" * 64}, "is not a hex HMAC-SHA256"),
    ],
)
def test_malformed_signatures_are_refused(headers: dict[str, str], reason: str) -> None:
    assert reason in refusal(FORMS["generic"], headers)


def test_standard_webhooks_tolerance_is_our_window_not_the_library_default() -> None:
    form = FORMS["standard"]
    auth = authenticator(**form.config(form.old, replay_window_s=900))
    assert auth.check("/", form.sign(form.old, BODY, NOW - 600), BODY) == form.scheme  # library: 5 min
    with pytest.raises(Unauthenticated, match="older than the 900 s"):
        auth.check("/", form.sign(form.old, BODY, NOW - 901), BODY)


def test_standard_webhooks_signer_agrees_with_the_library() -> None:
    import time

    now = int(time.time())
    headers = FORMS["standard"].sign(STANDARD[0], BODY, now)
    Webhook(STANDARD[0]).verify(BODY, headers, json_parse=False)  # raises if they disagree
    assert authenticator(Clock(now), standard_webhooks_secrets=[STANDARD[0]]).check("/", headers, BODY)


def test_standard_webhooks_accepts_one_valid_signature_among_several() -> None:
    form = FORMS["standard"]
    good = form.sign(form.new, BODY, NOW)
    wrong = form.sign(form.wrong, BODY, NOW)["webhook-signature"]
    good["webhook-signature"] = f"v2,abc {wrong} v1,!!! {good['webhook-signature']}"
    assert authenticator(**form.config(form.old, form.new)).check("/", good, BODY) == form.scheme


def test_standard_webhooks_refuses_a_body_that_is_not_utf8() -> None:
    form = FORMS["standard"]
    assert "UTF-8" in refusal(form, form.sign(form.old, b"\xff\xfe", NOW), b"\xff\xfe")

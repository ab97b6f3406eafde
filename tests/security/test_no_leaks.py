"""No secret, and no expected signature, reaches a log record, a refusal, a repr or the banner."""

from __future__ import annotations

import base64
import json
import logging

from cryptography.hazmat.primitives.asymmetric import rsa

from handler.security import Unauthenticated, WebhookAuthConfig, WebhookAuthenticator
from handler.support.log import JsonFormatter
from tests.security.conftest import anchors, certificate
from tests.security.smn import CERT_URL, Fetcher, notification
from tests.security.support import BODY, FORMS, HMAC, NOW, STANDARD, UNTIMED, Clock

TOKENS = ["tok-LEAK-a1b2c3d4e5", "tok-LEAK-f6a7b8c9d0"]
BASIC = ["alertmanager:pw-LEAK-11aa22bb", "grafana:pw-LEAK-33cc44dd"]


def basic(pair: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def test_a_run_over_every_scheme_leaks_no_secret(
    rsa_key: rsa.RSAPrivateKey, records: list[logging.LogRecord]
) -> None:
    config = WebhookAuthConfig(
        bearer_tokens=TOKENS,
        basic_credentials=BASIC,
        hmac_secrets=list(HMAC[:2]),
        standard_webhooks_secrets=list(STANDARD[:2]),
    )
    clock = Clock()
    auth = WebhookAuthenticator(
        config, fetch=Fetcher({CERT_URL: certificate(rsa_key)}), clock=clock, trust=anchors()
    )
    requests: list[tuple[str, dict[str, str], bytes]] = []
    expected_signatures: list[str] = []
    for form in FORMS.values():
        good = form.sign(form.old, BODY, NOW)
        signatures = [value for name, value in good.items() if "signature" in name]
        expected_signatures += [value.removeprefix("sha256=").removeprefix("v1,") for value in signatures]
        requests += [
            ("/", good, BODY),
            ("/", form.sign(form.wrong, BODY, NOW), BODY),
            ("/", good, BODY + b" "),
            ("/", form.sign(form.old, BODY, NOW - 3600), BODY),
        ]
    for token in TOKENS:
        requests += [("/alertmanager", {"authorization": f"Bearer {token}"}, BODY)]
        requests += [("/alertmanager", {"authorization": f"Bearer {token[:-1]}"}, BODY)]
    for pair in BASIC:
        requests += [("/alertmanager", basic(pair), BODY), ("/alertmanager", basic(pair + "x"), BODY)]
    signed = notification(rsa_key)
    requests += [
        ("/smn", {}, json.dumps(signed).encode()),
        ("/smn", {}, json.dumps({**signed, "message": "forged"}).encode()),
        ("/smn", {}, json.dumps(notification(rsa_key, url="https://evil.example/c.pem")).encode()),
        ("/", {}, BODY),
    ]

    seen: list[str] = [auth.describe(), repr(config), str(config), repr(auth), config.model_dump_json()]
    accepted = 0
    for path, headers, body in requests:
        try:
            auth.check(path, headers, body)
            accepted += 1
        except Unauthenticated as refused:
            seen += [refused.reason, str(refused), repr(refused), repr(refused.args)]
    disabled = WebhookAuthenticator(config.model_copy(update={"disabled": True}))
    disabled.check("/", {}, BODY)
    seen.append(disabled.describe())
    formatter = JsonFormatter()
    seen += [f"{record.getMessage()} {vars(record)} {formatter.format(record)}" for record in records]

    assert accepted == len(FORMS) + len(UNTIMED) + len(TOKENS) + len(BASIC) + 1  # untimed: no window
    assert len(records) > len(requests) - accepted  # every refusal was logged
    text = "\n".join(seen)
    secrets = [*TOKENS, *BASIC, *(pair.split(":")[1] for pair in BASIC), *HMAC, *STANDARD]
    secrets += [base64.b64encode(pair.encode()).decode() for pair in BASIC]
    secrets += [value.removeprefix("whsec_") for value in STANDARD]
    assert [secret for secret in secrets if secret in text] == []
    assert all(expected_signatures)
    assert [signature for signature in expected_signatures if signature in text] == []

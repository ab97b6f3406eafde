"""The gateway's signature check against both published vectors (docs/cloud-api.md §4.1)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from emulator import EmulatorCredential
from emulator.auth import (
    AuthError,
    ReceivedRequest,
    canonical_query_string,
    canonical_request,
    parse_authorization,
    verify,
)
from handler.cloud import Credentials, SignerAuth

AK = "TESTAK1234567890ABCD"
SK = "TestSecretKey0123456789abcdefghijklmnopqr"
PID = "0123456789abcdef0123456789abcdef"
DATE = "20240115T083000Z"
NOW = datetime(2024, 1, 15, 8, 30, tzinfo=timezone.utc).timestamp()
TOKEN = "TESTSECURITYTOKEN"

VECTOR1_PATH = (
    f"/v1/{PID}/cloudservers/1b3c5e7f-0000-4000-8000-00000000aaaa"
    "/detachvolume/2c4d6e8f-0000-4000-8000-00000000bbbb"
)
VECTOR1_CANONICAL = (
    f"DELETE\n{VECTOR1_PATH}/\ndelete_flag=0\n"
    "content-type:application/json\nhost:ecs.ap-southeast-1.myhuaweicloud.com\n"
    f"x-project-id:{PID}\nx-sdk-date:{DATE}\n\n"
    "content-type;host;x-project-id;x-sdk-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
VECTOR1_AUTH = (
    f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
    "Signature=6a0514af12e169a3c7cefd42838f25d25bd4515962eed6dd310567e6bc48a98e"
)
VECTOR2_PATH = f"/v2/{PID}/notifications/topics/urn%3Asmn%3Aap-southeast-1%3A{PID}%3Adetach_events/publish"
VECTOR2_BODY = b'{"subject":"detach done","message":"volume detached"}'
VECTOR2_AUTH = (
    f"SDK-HMAC-SHA256 Access={AK}, "
    "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token, "
    "Signature=13c6d95d04bd882cd4f48fea9d5cdca3cc067f296dc2e25c0d6aff5d76e060f3"
)

PERMANENT = EmulatorCredential(AK, SK, project_id=PID)
TEMPORARY = EmulatorCredential(AK, SK, project_id=PID, security_token=TOKEN)


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


VECTOR1 = ReceivedRequest(
    method="DELETE",
    raw_path=VECTOR1_PATH.encode(),
    raw_query=b"delete_flag=0",
    headers=headers(
        ("Content-Type", "application/json"),
        ("X-Sdk-Date", DATE),
        ("X-Project-Id", PID),
        ("Host", "ecs.ap-southeast-1.myhuaweicloud.com"),
        ("Authorization", VECTOR1_AUTH),
    ),
    body=b"",
)
VECTOR2 = ReceivedRequest(
    method="POST",
    raw_path=VECTOR2_PATH.encode(),
    raw_query=b"",
    headers=headers(
        ("Content-Type", "application/json;charset=UTF-8"),
        ("X-Sdk-Date", DATE),
        ("X-Project-Id", PID),
        ("X-Security-Token", TOKEN),
        ("Host", "smn.ap-southeast-1.myhuaweicloud.com"),
        ("Authorization", VECTOR2_AUTH),
    ),
    body=VECTOR2_BODY,
)


def check(request: ReceivedRequest, credential: EmulatorCredential = PERMANENT) -> EmulatorCredential:
    lookup = {credential.access_key: credential}.get
    return verify(request, lookup, now=NOW, max_skew_s=900)


def refused(request: ReceivedRequest, credential: EmulatorCredential = PERMANENT) -> str:
    with pytest.raises(AuthError) as caught:
        check(request, credential)
    return str(caught.value)


def with_header(request: ReceivedRequest, name: str, value: str | None) -> ReceivedRequest:
    kept = [(k, v) for k, v in request.headers if k != name.lower().encode()]
    if value is not None:
        kept.append((name.lower().encode(), value.encode()))
    return dataclasses.replace(request, headers=kept)


def test_vector1_canonical_request_is_rebuilt_exactly() -> None:
    signed = parse_authorization(VECTOR1_AUTH).signed_headers
    assert canonical_request(VECTOR1, signed) == VECTOR1_CANONICAL


def test_both_vectors_verify() -> None:
    assert check(VECTOR1) is PERMANENT
    assert check(VECTOR2, TEMPORARY) is TEMPORARY


@pytest.mark.parametrize(
    "tampered",
    [
        dataclasses.replace(VECTOR1, method="GET"),
        dataclasses.replace(VECTOR1, raw_path=VECTOR1_PATH.replace("bbbb", "bbbc").encode()),
        dataclasses.replace(VECTOR1, raw_query=b"delete_flag=1"),
        dataclasses.replace(VECTOR1, raw_query=b""),
        dataclasses.replace(VECTOR1, body=b" "),
        with_header(VECTOR1, "Host", "ecs.ap-southeast-2.myhuaweicloud.com"),
        with_header(VECTOR1, "X-Project-Id", PID.replace("0", "1", 1)),
        with_header(VECTOR1, "X-Sdk-Date", "20240115T083001Z"),
        with_header(VECTOR1, "Authorization", VECTOR1_AUTH[:-1] + "f"),
    ],
    ids=["method", "path", "query", "query-dropped", "body", "host", "header", "date", "sig"],
)
def test_vector1_with_one_change_fails(tampered: ReceivedRequest) -> None:
    assert refused(tampered) == "verify aksk signature fail"


@pytest.mark.parametrize(
    "tampered",
    [
        dataclasses.replace(VECTOR2, body=VECTOR2_BODY.replace(b"done", b"Done")),
        dataclasses.replace(VECTOR2, raw_path=VECTOR2_PATH.replace("%3Adetach", "%3Aattach").encode()),
        with_header(VECTOR2, "Content-Type", "application/json"),
    ],
    ids=["body", "path", "content-type"],
)
def test_vector2_with_one_change_fails(tampered: ReceivedRequest) -> None:
    assert refused(tampered, TEMPORARY) == "verify aksk signature fail"


def test_vector2_needs_the_right_signed_token() -> None:
    assert "missing X-Security-Token" in refused(with_header(VECTOR2, "X-Security-Token", None), TEMPORARY)
    wrong = with_header(VECTOR2, "X-Security-Token", "OTHERTOKEN")
    assert refused(wrong, TEMPORARY) == "invalid security token"
    assert "permanent" in refused(VECTOR2, PERMANENT)
    # Vector 1 does not list x-security-token among its SignedHeaders.
    unsigned_token = with_header(VECTOR1, "X-Security-Token", TOKEN)
    assert refused(unsigned_token, TEMPORARY) == "X-Security-Token must be a signed header"


def test_unknown_access_key_and_wrong_secret() -> None:
    assert refused(VECTOR1, EmulatorCredential("OTHERAK", SK)) == "unknown access key"
    message = refused(VECTOR1, EmulatorCredential(AK, "wrong-secret-key"))
    assert message == "verify aksk signature fail"
    assert "wrong-secret-key" not in message


@pytest.mark.parametrize("minutes", [16, -16])
def test_a_date_more_than_15_minutes_off_is_expired(minutes: int) -> None:
    lookup = {AK: PERMANENT}.get
    with pytest.raises(AuthError, match="request expired: X-Sdk-Date more than 15 minutes"):
        verify(VECTOR1, lookup, now=NOW + minutes * 60, max_skew_s=900)
    assert verify(VECTOR1, lookup, now=NOW + 15 * 60, max_skew_s=900) is PERMANENT


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing authorization"),
        ("", "missing authorization"),
        ("Bearer abc", "unsupported authorization algorithm"),
        ("SDK-HMAC-SHA256 Access=A, Signature=s", "malformed authorization header"),
        ("SDK-HMAC-SHA256 Access=A, SignedHeaders=host, Signature=", "malformed"),
        ("SDK-HMAC-SHA256 Access=A, Access=A, SignedHeaders=host, Signature=s", "malformed"),
    ],
)
def test_malformed_authorization(authorization: str | None, reason: str) -> None:
    assert reason in refused(with_header(VECTOR1, "Authorization", authorization))


def test_signed_headers_must_include_host_and_date() -> None:
    auth = VECTOR1_AUTH.replace("content-type;host;x-project-id;x-sdk-date", "content-type;x-sdk-date")
    message = refused(with_header(VECTOR1, "Authorization", auth))
    assert message == "SignedHeaders must include host and x-sdk-date"


def test_a_listed_header_must_be_present() -> None:
    message = refused(with_header(VECTOR1, "X-Project-Id", None))
    assert message == "signed header x-project-id is missing from the request"


def test_a_malformed_date_is_refused() -> None:
    assert "invalid X-Sdk-Date" in refused(with_header(VECTOR1, "X-Sdk-Date", "2024-01-15T08:30:00Z"))


def test_declared_payload_hash_replaces_the_body_hash() -> None:
    unsigned = with_header(VECTOR1, "X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD")
    signed = parse_authorization(VECTOR1_AUTH).signed_headers
    assert canonical_request(unsigned, signed).endswith("\nUNSIGNED-PAYLOAD")


def test_query_is_sorted_and_reencoded() -> None:
    raw = b"b=2&a=x%20y&a=1&c=%7e&d=a%3Ab&e"
    assert canonical_query_string(raw) == "a=1&a=x%20y&b=2&c=~&d=a%3Ab&e="


segment = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12)
query_value = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    segments=st.lists(segment, min_size=1, max_size=4),
    query=st.dictionaries(st.text("abcxyz_-.", min_size=1, max_size=5), query_value, max_size=3),
    body=st.binary(max_size=64),
)
def test_the_client_signer_and_the_gateway_agree(
    segments: list[str], query: dict[str, str], body: bytes
) -> None:
    """The project's signer (``handler.cloud``) against this independent verifier."""
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    request = httpx.Request("POST", f"http://127.0.0.1:1{path}", params=query, content=body)
    signer = SignerAuth(Credentials(access_key=AK, secret_key=SecretStr(SK), project_id=PID))
    signer.sign_request(request)
    received = ReceivedRequest(
        method="POST",
        raw_path=request.url.raw_path.split(b"?", 1)[0],
        raw_query=request.url.query,
        headers=[(k.lower(), v) for k, v in request.headers.raw],
        body=request.content,
    )
    date = request.headers["X-Sdk-Date"]
    now = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert verify(received, {AK: PERMANENT}.get, now=now, max_skew_s=900) is PERMANENT

"""The signer reproduces both published SDK test vectors (docs/cloud-api.md §4.1) to the byte."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from handler.cloud import Credentials, SignerAuth
from handler.cloud._signer import canonical_query, canonical_uri, sdk_date, sign

AK = "TESTAK1234567890ABCD"
SK = "TestSecretKey0123456789abcdefghijklmnopqr"
PID = "0123456789abcdef0123456789abcdef"
DATE = "20240115T083000Z"
DETACH_PATH = (
    f"/v1/{PID}/cloudservers/1b3c5e7f-0000-4000-8000-00000000aaaa"
    "/detachvolume/2c4d6e8f-0000-4000-8000-00000000bbbb"
)
VECTOR1_CANONICAL = (
    "DELETE\n"
    f"{DETACH_PATH}/\n"
    "delete_flag=0\n"
    "content-type:application/json\n"
    "host:ecs.ap-southeast-1.myhuaweicloud.com\n"
    f"x-project-id:{PID}\n"
    f"x-sdk-date:{DATE}\n"
    "\n"
    "content-type;host;x-project-id;x-sdk-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
VECTOR1_AUTH = (
    "SDK-HMAC-SHA256 Access=TESTAK1234567890ABCD, "
    "SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
    "Signature=6a0514af12e169a3c7cefd42838f25d25bd4515962eed6dd310567e6bc48a98e"
)
SMN_PATH = f"/v2/{PID}/notifications/topics/urn%3Asmn%3Aap-southeast-1%3A{PID}%3Adetach_events/publish"
VECTOR2_BODY = b'{"subject":"detach done","message":"volume detached"}'
VECTOR2_AUTH = (
    "SDK-HMAC-SHA256 Access=TESTAK1234567890ABCD, "
    "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token, "
    "Signature=13c6d95d04bd882cd4f48fea9d5cdca3cc067f296dc2e25c0d6aff5d76e060f3"
)


def test_vector1_every_intermediate_form() -> None:
    result = sign(
        method="DELETE",
        path=DETACH_PATH,
        query="delete_flag=0",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", DATE),
            ("X-Project-Id", PID),
            ("Host", "ecs.ap-southeast-1.myhuaweicloud.com"),
        ],
        body=b"",
        access_key=AK,
        secret_key=SK,
    )
    assert result.canonical_request == VECTOR1_CANONICAL
    assert result.string_to_sign == (
        "SDK-HMAC-SHA256\n20240115T083000Z\nc3413aee1116b965cfccfadeaf6de049e90a3b2a16f04461d4efd684bf203ea6"
    )
    assert result.authorization == VECTOR1_AUTH


def _send_through_auth(request: httpx.Request, creds: Credentials) -> httpx.Request:
    flow = SignerAuth(creds).sync_auth_flow(request)
    return next(flow)


def test_vector1_through_httpx_auth() -> None:
    creds = Credentials(access_key=AK, secret_key=SecretStr(SK), project_id=PID)
    request = httpx.Request(
        "DELETE",
        f"https://ecs.ap-southeast-1.myhuaweicloud.com{DETACH_PATH}",
        params={"delete_flag": "0"},
        headers={"Content-Type": "application/json", "X-Sdk-Date": DATE},
    )
    signed = _send_through_auth(request, creds)
    assert signed.headers["Authorization"] == VECTOR1_AUTH
    assert signed.headers["X-Project-Id"] == PID


def test_vector2_body_and_security_token_through_httpx_auth() -> None:
    creds = Credentials(
        access_key=AK,
        secret_key=SecretStr(SK),
        project_id=PID,
        security_token=SecretStr("TESTSECURITYTOKEN"),
    )
    request = httpx.Request(
        "POST",
        httpx.URL(f"https://smn.ap-southeast-1.myhuaweicloud.com{SMN_PATH}"),
        content=VECTOR2_BODY,
        headers={"Content-Type": "application/json;charset=UTF-8", "X-Sdk-Date": DATE},
    )
    signed = _send_through_auth(request, creds)
    assert signed.headers["Authorization"] == VECTOR2_AUTH
    assert signed.headers["X-Security-Token"] == "TESTSECURITYTOKEN"
    assert signed.url.raw_path.decode().startswith(SMN_PATH)


def test_wire_query_is_the_canonical_query() -> None:
    creds = Credentials(access_key=AK, secret_key=SecretStr(SK))
    request = httpx.Request(
        "GET", "https://ecs.example/v1/p/x", params=[("b", "2 3"), ("a", "z"), ("a", "y")]
    )
    signed = _send_through_auth(request, creds)
    assert signed.url.query == b"a=y&a=z&b=2%203"


def test_signature_changes_with_any_signed_part() -> None:
    base = {
        "method": "DELETE",
        "path": DETACH_PATH,
        "query": "delete_flag=0",
        "headers": [("Host", "h"), ("X-Sdk-Date", DATE)],
        "body": b"",
        "access_key": AK,
        "secret_key": SK,
    }
    reference = sign(**base).signature  # type: ignore[arg-type]
    for key, value in [
        ("method", "GET"),
        ("path", DETACH_PATH + "x"),
        ("query", "delete_flag=1"),
        ("body", b"{}"),
        ("secret_key", SK + "x"),
        ("headers", [("Host", "h2"), ("X-Sdk-Date", DATE)]),
    ]:
        assert sign(**{**base, key: value}).signature != reference, key  # type: ignore[arg-type]


def test_unsigned_headers_do_not_change_the_signature() -> None:
    headers = [("Host", "h"), ("X-Sdk-Date", DATE)]
    plain = sign(method="GET", path="/", query="", headers=headers, body=b"", access_key=AK, secret_key=SK)
    extra = sign(
        method="GET",
        path="/",
        query="",
        headers=[*headers, ("Connection", "keep-alive"), ("X_Odd", "v")],
        body=b"",
        access_key=AK,
        secret_key=SK,
    )
    assert plain.signature == extra.signature


def test_canonical_uri_encodes_colons_and_appends_slash() -> None:
    assert canonical_uri("/v2/p/topics/urn%3Asmn%3Ax/publish") == "/v2/p/topics/urn%3Asmn%3Ax/publish/"
    assert canonical_uri("/a/b/") == "/a/b/"


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=6))
@pytest.mark.slow
def test_canonical_query_is_order_independent_and_stable(pairs: list[tuple[str, str]]) -> None:
    raw = httpx.QueryParams(pairs)
    reversed_raw = httpx.QueryParams(list(reversed(pairs)))
    once = canonical_query(str(raw))
    assert once == canonical_query(str(reversed_raw))
    assert canonical_query(once) == once


@pytest.mark.parametrize(
    "path",
    [
        "/v1/0123456789abcdef0123456789abcdef/cloudservers/1b3c5e7f-0000-4000-8000-00000000aaaa",
        "/v1/p/jobs/ff80.808~1_",
        "/v2/p/notifications/topics/urn%3Asmn%3Aeu-de%3Ap%3Ajobs/publish",
        "/a b/ü/%7E",
        "",
    ],
)
def test_canonical_uri_takes_the_short_way_only_when_it_gives_the_same(path: str) -> None:
    encoded = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    assert canonical_uri(path) == (encoded if encoded.endswith("/") else encoded + "/")


@pytest.mark.parametrize(
    "now",
    [
        datetime(2024, 1, 15, 8, 30, tzinfo=timezone.utc),
        datetime(2024, 1, 15, 16, 30, tzinfo=timezone(timedelta(hours=8))),  # a clock in Beijing time
        datetime(2024, 1, 14, 23, 30, tzinfo=timezone(timedelta(hours=-9))),  # the day before, locally
    ],
)
def test_the_sdk_date_is_utc_whatever_zone_the_clock_gives(now: datetime) -> None:
    # The gateway reads X-Sdk-Date as UTC: a local wall time would be refused as hours off.
    assert sdk_date(now) == DATE


def test_the_sdk_date_of_the_system_clock_is_now_in_utc() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = datetime.strptime(sdk_date(), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= stamp <= datetime.now(timezone.utc)

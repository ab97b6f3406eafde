"""Property: nothing a caller sends makes the console answer 5xx, and nothing it sends is shown
unescaped.

Over every page and the approval form, with hostile query strings (percent-escapes that are not
UTF-8, huge, negative and not-a-number page numbers and offsets, long and deeply nested search
text, control characters), hostile ``Authorization`` headers (bytes that are not ASCII, bad
base64, huge), forms with bad CSRF tokens and origins, and wrong methods: ``Console.handle`` on
a console wired to a running deployment (a request and an approval waiting in it), and the real
Starlette server over loopback for a sample; with the history on SQLite and on PostgreSQL (whose
text holds no NUL: a search for one is no error of the database). Each answer is a page (200)
or a specific 4xx with its reason, and carries the console's security headers.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from handler.entry.runtime import blast_radius
from handler.local.console import _throttle, _views
from handler.local.console._auth import ConsoleAuth, Viewer
from handler.local.console.app import CSP, Console, ConsoleRequest, ConsoleResponse
from handler.security import WebhookAuthenticator
from tests.console.conftest import ALICE_TOKEN, CONSOLE_TOKEN, PASSWORDS, Deployment, deployment
from tests.history.conftest import postgres_url  # noqa: F401 (a fixture: a schema of the test's own)
from tests.support import WEB1, WEB1_DATA, WEB2, WEB2_DATA, FakeClock

MARK = "<i>\"onx=1'&"  # shown only escaped: neither "<i>" nor '"onx' may appear in a page
PAGES = ["", "/", "/request", "/inflight", "/approvals", "/safety", "/plots", "/static/console.css"]
PARAMS = ["q", "page", "outcome", "id", "offset", "limit", "token", "x"]
CONTROLS = "".join(map(chr, [*range(0x20), 0x7F, 0x85, 0x2028]))
CONTROLS_BYTES = bytes([*range(0x20), 0x7F]).replace(b"\t", b"")
T = TypeVar("T")
EXPECTED = {200, 400, 401, 403, 404, 405, 409, 413, 415, 429}


@dataclass
class Target:
    deployed: Deployment
    console: Console
    auth: ConsoleAuth
    clock: FakeClock
    approval_id: str


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A deployment whose history is on SQLite, or on PostgreSQL (whose text holds no NUL)."""
    history = {"history": request.getfixturevalue("postgres_url")} if request.param == "postgresql" else {}
    for deployed in deployment(tmp_path, **history):
        runtime = deployed.runtime
        deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": MARK})
        waiting = deployed.detach(
            {"server_id": WEB2, "volume_id": WEB2_DATA, "delete_flag": 1, "idempotency_key": "t-wait"},
            token=ALICE_TOKEN,
        )
        settings_ = runtime.settings
        clock = FakeClock()
        auth = ConsoleAuth(
            settings_.console_users,
            WebhookAuthenticator(settings_.webhook_auth()),
            auth_disabled=False,
            clock=clock,
        )
        console = Console(
            settings_,
            auth=auth,
            reader=_views.HistoryReader(settings_.history_url()),
            blast=blast_radius(settings_, runtime.store),
            desk=runtime.detach.approvals,
        )
        try:
            yield Target(deployed, console, auth, clock, str(waiting["approval_id"]))
        finally:
            console.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def mostly(usual: st.SearchStrategy[T], other: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``usual`` nine times in ten: most examples get past the login and the page's name."""
    # (not n == 0 of range(10): Hypothesis draws the ends of a range far more often)
    return st.integers(0, 99).flatmap(lambda n: other if n % 10 == 3 else usual)


latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=40)
valid_login = st.sampled_from(
    [
        basic("reader", PASSWORDS["reader"]),
        basic("alice", PASSWORDS["alice"]),
        basic("bob", PASSWORDS["bob"]),
        f"Bearer {CONSOLE_TOKEN}",
    ]
)
hostile_login = st.one_of(
    st.sampled_from(
        [
            f"Bearer {ALICE_TOKEN}",
            basic("mallory", MARK),
            "Basic ###",
            "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
            "Basic " + base64.b64encode(b"no-colon").decode(),
            "Basic",
            "Bearer",
            "",
        ]
    ),
    latin1.map("Basic ".__add__),
    latin1.map("Bearer ".__add__),
    latin1,
    st.builds(lambda n: "Basic " + "A" * n, st.integers(8_000, 70_000)),
    st.builds(lambda n: "Bearer " + "é" * n, st.integers(1, 9_000)),
)
authorization = mostly(valid_login, hostile_login)
number = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["-1", "0", "NaN", "nan", "inf", "-inf", "1e309", "0x10", "1_000", " 2", "²", "٣", "𝟙"]),
    st.builds(lambda n: "9" * n, st.integers(1, 6_000)),
)
value = st.one_of(
    st.just(MARK),
    number,
    st.text(max_size=60),
    st.text(st.sampled_from(CONTROLS), max_size=20),
    st.binary(max_size=40).map(quote_from_bytes),  # percent-escapes that need not be UTF-8
    st.builds(lambda n: "[" * n + MARK, st.integers(100, 5_000)),
    st.builds(lambda n: "x" * n, st.integers(190, 20_000)),
)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(st.sampled_from(PARAMS) | st.text(max_size=8), value), max_size=4))
    raw = "&".join(f"{quote(name)}={quote(text, safe='%')}" for name, text in pairs)
    return draw(st.sampled_from([raw, raw + "&" * 30, "%ff%fe=%c3%28", "&".join(["a=1"] * 25), MARK]))


@st.composite
def forms(draw: st.DrawFn, target: Target) -> tuple[dict[str, str], bytes]:
    """Headers and body of an approval form: valid, or broken in one or more ways."""
    viewer = draw(st.sampled_from([Viewer("bob", True), Viewer("alice", True), Viewer("reader", False)]))
    good = target.auth.token(viewer)
    broken_token = st.sampled_from(["", "abc.def", "1.²", "²." + good.partition(".")[2], f"{good}é", MARK])
    broken_token |= st.builds(lambda n: "9" * n + "." + "0" * 64, st.integers(1, 300)) | latin1
    token = draw(mostly(st.just(good), broken_token))
    decision = draw(mostly(st.sampled_from(["approve", "deny"]), st.sampled_from(["", MARK]) | latin1))
    fields = {"decision": decision, "token": token, "comment": draw(value)}
    body = "&".join(f"{name}={quote(text)}" for name, text in fields.items()).encode()
    body = draw(mostly(st.just(body), st.sampled_from([body + b"%ff", b"\xff\xfe", b"a=1&" * 10, b""])))
    site = draw(mostly(st.just("same-origin"), st.sampled_from([None, "cross-site", "none", MARK]) | latin1))
    origin = draw(
        mostly(st.none(), st.sampled_from(["http://[", "null", "http://127.0.0.1:1", MARK]) | latin1)
    )
    form = "application/x-www-form-urlencoded"
    content_type = draw(mostly(st.just(form), st.sampled_from([f"{form}; é", "", "é/ü", "text/plain"])))
    headers = {"content-type": content_type, "host": "127.0.0.1:8080"}
    if site is not None:
        headers["sec-fetch-site"] = site
    if origin is not None:
        headers["origin"] = origin
    return headers, body


@st.composite
def requests(draw: st.DrawFn, target: Target) -> ConsoleRequest:
    decide = draw(st.integers(0, 3)) == 0
    if decide:
        approval = draw(st.sampled_from([target.approval_id, "0" * 32, "f" * 32]))
        path = f"/console/approvals/{approval}"
        headers, body = draw(forms(target))
        method = draw(mostly(st.sampled_from(["POST", "post"]), st.sampled_from(["GET", "PUT", "DELETE"])))
    else:
        odd = st.sampled_from(["/%ff%fe", "/%00", "/..%2f..%2fetc", "//", "/static/../request"])
        path = "/console" + draw(mostly(st.sampled_from(PAGES), odd | st.text(max_size=30).map("/".__add__)))
        headers, body = {}, b""
        method = draw(
            mostly(st.sampled_from(["GET", "HEAD", "get"]), st.sampled_from(["POST", "PATCH", "OPTIONS"]))
        )
    headers["authorization"] = draw(authorization)
    return ConsoleRequest(method, path, draw(query_strings()), headers, body, client="127.0.0.9")


def check(
    answer: ConsoleResponse | httpx.Response, status: int, body: bytes, headers: dict[str, str]
) -> None:
    assert status in EXPECTED, (status, body[:500])
    lowered = {name.lower(): v for name, v in headers.items()}
    assert lowered["content-security-policy"] == CSP
    assert lowered["x-content-type-options"] == "nosniff"
    if status >= 400 and body:  # (a HEAD has none)
        assert re.search(rb'<p class="problem">[^<]+</p>', body), body[:500]  # says why
    assert b"<i>" not in body
    assert b'"onx' not in body


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_the_console_never_answers_5xx_nor_echoes_unescaped(target: Target, data: st.DataObject) -> None:
    target.clock.advance(_throttle.FORGET_S + 1)  # every failed login before this one forgotten
    request = data.draw(requests(target))
    answer = target.console.handle(request)
    event(f"status {answer.status}")
    check(answer, answer.status, answer.body, answer.headers)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_server_never_answers_5xx(target: Target, data: st.DataObject) -> None:
    """Over real HTTP: the server's parsing (methods it has no route for, escapes in the path)
    comes first. Failed logins here count against the client's address: 429 is expected too."""
    request = data.draw(requests(target))
    method = data.draw(mostly(st.just(request.method.upper()), st.sampled_from(["TRACE", "FOO", "CONNECT"])))
    # What HTTP carries (RFC 9110 §5.5): header values of any byte but controls, obs-text included
    headers = [
        (name.encode(), value.encode("latin-1").translate(None, CONTROLS_BYTES).strip())
        for name, value in request.headers.items()
        if name != "host"
    ]
    url = f"{target.deployed.url}{quote(request.path, safe='/%')}?{request.query}"
    try:
        answer = httpx.request(method, url, headers=headers, content=request.body or None, timeout=10)
    except httpx.RemoteProtocolError:  # a head too large for the server: it closes, never 5xx
        event("closed")
        return
    event(f"status {answer.status_code}")
    check(answer, answer.status_code, answer.content, dict(answer.headers))

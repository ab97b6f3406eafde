"""The console over real loopback HTTP, as any client sees it: who may look and decide, what
each page shows of real requests (made through the webhook, detached by the emulator, recorded
by the history), the headers every answer carries, and 4xx (never 500) for input that does not
fit. The browser's view is in test_console_browser.py."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from handler.entry.runtime import blast_radius
from handler.history import Query, Trail
from handler.local.console import _views
from handler.local.console._auth import CHALLENGE, ConsoleAuth, Viewer
from handler.local.console.app import CSP
from handler.security import WebhookAuthenticator
from tests.console.conftest import (
    ALICE_TOKEN,
    CONSOLE_TOKEN,
    HOSTILE_NAME,
    PASSWORDS,
    Deployment,
    deployment,
)
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2, WEB2_DATA

PAGES = (
    "/console",
    "/console/inflight",
    "/console/approvals",
    "/console/safety",
    "/console/plots",
)
T = TypeVar("T")


def eventually(what: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s")


def trail_of(deployed: Deployment, key: str, outcome: str) -> Trail:
    """The request of ``key`` once the history says it ended in ``outcome``."""
    reader = _views.HistoryReader(deployed.runtime.settings.history_url())
    try:
        return eventually(
            lambda: next(iter(t for t in reader.query(Query(key=key)) if t.outcome == outcome), None)
        )
    finally:
        reader.close()


def form_token(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "no form on the page"
    return found[1]


def post_decision(
    deployed: Deployment, approval_id: str, user: str, data: dict[str, str], **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{deployed.url}/console/approvals/{approval_id}",
        data=data,
        auth=(user, PASSWORDS[user]),
        headers={"Sec-Fetch-Site": "same-origin", **headers},
        timeout=10,
    )


def test_the_console_asks_for_a_login_and_refuses_what_does_not_verify(deployed: Deployment) -> None:
    anonymous = deployed.get("/console", user=None)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == CHALLENGE
    wrong = httpx.get(f"{deployed.url}/console", auth=("alice", "not-her-password"), timeout=5)
    assert wrong.status_code == 401
    stranger = httpx.get(f"{deployed.url}/console", auth=("mallory", "pw"), timeout=5)
    assert stranger.status_code == 401
    # a webhook credential that may not read the console; one that may (a proxy adds it)
    webhook_only = httpx.get(
        f"{deployed.url}/console", headers={"Authorization": f"Bearer {ALICE_TOKEN}"}, timeout=5
    )
    assert webhook_only.status_code == 403
    assert "not /console" in webhook_only.text
    dashboard = httpx.get(
        f"{deployed.url}/console", headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}, timeout=5
    )
    assert dashboard.status_code == 200
    assert "dashboard" in dashboard.text
    assert "(may approve)" not in dashboard.text  # its routes do not name /approvals
    assert "(may approve)" in deployed.get("/console", user="alice").text
    assert PASSWORDS["alice"] not in deployed.get("/console", user="alice").text


class Needs(HTMLParser):
    """What a page would need the browser to allow: scripts, inline styles, event handlers,
    and the URLs it loads or sends to."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "iframe", "object", "embed", "img", "base"):
            self.inline.append(f"<{tag}>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"{tag} {name}=")
            if name in ("href", "src", "action", "formaction", "xlink:href") and value is not None:
                self.urls.append(value)


def needs(page: str) -> Needs:
    parser = Needs()
    parser.feed(page)
    return parser


def test_every_answer_carries_headers_that_fit_what_the_pages_need(deployed: Deployment) -> None:
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "t-headers"})
    trail = trail_of(deployed, "t-headers", "succeeded")
    approval_id = pending_approval(deployed, WEB2, WEB2_DATA, "t-headers-2")
    alice = ("alice", PASSWORDS["alice"])
    answers = [deployed.get(path) for path in (*PAGES, "/console/nowhere", "/console?page=0")]
    answers += [
        deployed.get("/console/request", params={"id": trail.id}),
        deployed.get("/console/approvals", user="alice"),  # with its forms and their tokens
        deployed.get("/console", user=None),  # 401
        httpx.post(f"{deployed.url}/console", auth=alice, timeout=5),  # 405
        httpx.request("TRACE", f"{deployed.url}/console", auth=alice, timeout=5),  # 405
        httpx.post(f"{deployed.url}/console/approvals/{'0' * 32}", auth=alice, timeout=5),  # 415
        httpx.post(f"{deployed.url}/console/approvals/{'0' * 32}", data={"c": "x" * 300_000}, timeout=5),
    ]
    assert {a.status_code for a in answers} == {200, 400, 401, 404, 405, 413, 415}
    forms = needs(answers[-6].text)  # alice's approvals page
    assert forms.urls.count(f"/console/approvals/{approval_id}") == 1
    assert 'name="token"' in answers[-6].text
    for answer in answers:
        where = f"{answer.request.method} {answer.url} {answer.status_code}"
        assert answer.headers["content-security-policy"] == CSP, where
        assert answer.headers["x-content-type-options"] == "nosniff", where
        assert answer.headers["x-frame-options"] == "DENY", where
        assert answer.headers["referrer-policy"] == "no-referrer", where
        assert answer.headers["cross-origin-opener-policy"] == "same-origin", where
        assert answer.headers["cross-origin-resource-policy"] == "same-origin", where
        assert answer.headers["cache-control"] == "no-store", where  # no page, no token is kept
        assert answer.headers["content-type"] == "text/html; charset=utf-8", where
        # what the policy allows is all the page needs: no script, no inline style, no image,
        # and every link, stylesheet and form within the console
        found = needs(answer.text)
        assert found.inline == [], where
        assert all(url.startswith(("/console", "?")) for url in found.urls), (where, found.urls)
    directives = dict(d.strip().partition(" ")[::2] for d in CSP.split(";"))
    assert directives == {
        "default-src": "'none'",  # no script, image, font, frame or connection
        "style-src": "'self'",  # /console/static/console.css
        "form-action": "'self'",  # the search and the approval forms
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }
    plots = next(a for a in answers if a.url.path == "/console/plots").text
    assert "<svg" in plots  # drawn inline: nothing fetched
    css = deployed.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert css.headers["x-content-type-options"] == "nosniff"
    assert css.headers["cache-control"] == "private, max-age=300"  # no token in it: kept a while
    assert not re.search(r"url\(|@import", css.text)  # it loads nothing more
    head = httpx.head(f"{deployed.url}/console", auth=("reader", PASSWORDS["reader"]), timeout=5)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-security-policy"] == CSP


def test_a_request_is_listed_with_its_whole_trail(deployed: Deployment) -> None:
    record = deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "t-trail"})
    assert record["status"] == "accepted"
    trail = trail_of(deployed, "t-trail", "succeeded")

    listing = deployed.get("/console", params={"q": "t-trail"}).text
    assert f"/console/request?id={trail.id}" in listing
    assert '<span class="outcome succeeded">succeeded</span>' in listing
    assert WEB1 in listing
    page = deployed.get("/console/request", params={"id": trail.id})
    assert page.status_code == 200
    steps = re.findall(r"<td>((?:detach|poll)\.[a-z_]+)</td>", page.text)
    assert steps[0] == "detach.requested"
    assert steps[1] == "detach.accepted"
    assert "poll.status" in steps
    assert steps[-1] == "detach.result"
    assert record["job_id"] in page.text
    assert "request_id=" in page.text  # the cloud's request id, on the accepted step


def test_search_outcome_and_pages(deployed: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "t-page-1"})
    trail_of(deployed, "t-page-1", "succeeded")
    deployed.detach({"server_id": WEB2, "volume_id": WEB2_DATA, "idempotency_key": "t-page-2"})
    trail_of(deployed, "t-page-2", "succeeded")
    monkeypatch.setattr(_views, "PAGE_SIZE", 1)

    first = deployed.get("/console").text
    assert "t-page-2" in first  # newest first
    assert "t-page-1" not in first
    assert "page=2" in first  # a link to the older one
    second = deployed.get("/console", params={"page": "2"}).text
    assert "t-page-1" in second
    assert "page=1" in second
    assert "page=3" not in second
    assert "t-page-1" in deployed.get("/console", params={"q": WEB1[-6:]}).text
    assert "No request in the history matches" in deployed.get("/console", params={"outcome": "failed"}).text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console?page=0", 400, "page: a whole number from 1 to 10000"),
        ("/console?page=abc", 400, "page: a whole number"),
        ("/console?page=99999999999999999999", 400, "page:"),
        ("/console?outcome=bogus", 400, "outcome: must be one of"),
        ("/console?q=" + "x" * 201, 400, "q: at most 200 characters"),
        ("/console?" + "&".join(f"a{i}=1" for i in range(30)), 400, "too many parameters"),
        ("/console?q=%ff%fe&outcome=", 200, "No request"),
        ("/console?q=%00%27%22%3C", 200, "No request"),
        ("/console?q=%25", 200, "No request"),
        ("/console/request", 400, "id: the request"),
        ("/console/request?id=%3Cb%3Eno%3C/b%3E", 404, "no request &lt;b&gt;no&lt;/b&gt; in the history"),
        ("/console/nowhere", 404, "no console page"),
        ("/console/approvals/not-an-id", 404, "no console page"),
    ],
)
def test_input_that_does_not_fit_is_a_4xx_naming_it(
    deployed: Deployment, path: str, status: int, says: str
) -> None:
    answer = deployed.get(path)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_methods_and_forms_that_do_not_fit(deployed: Deployment) -> None:
    url = f"{deployed.url}/console"
    auth = ("bob", PASSWORDS["bob"])
    post = httpx.post(url, auth=auth, timeout=5)
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    delete = httpx.delete(f"{url}/approvals/{'0' * 32}", auth=auth, timeout=5)
    assert delete.status_code == 405
    assert delete.headers["allow"] == "POST"
    decide = f"{url}/approvals/{'0' * 32}"
    as_json = httpx.post(decide, json={"decision": "approve"}, auth=auth, timeout=5)
    assert as_json.status_code == 415
    huge = httpx.post(decide, data={"comment": "x" * 300_000}, auth=auth, timeout=5)
    assert huge.status_code == 413
    latin = httpx.post(
        decide,
        content=b"comment=\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=auth,
        timeout=5,
    )
    assert latin.status_code == 400
    assert "form: not a UTF-8 form" in latin.text


def pending_approval(deployed: Deployment, server: str, volume: str, key: str) -> str:
    record = deployed.detach(
        {"server_id": server, "volume_id": volume, "delete_flag": 1, "idempotency_key": key},
        token=ALICE_TOKEN,
    )
    assert record["status"] == "pending_approval", record
    return str(record["approval_id"])


def test_an_approval_is_decided_once_by_someone_else_than_who_asked(deployed: Deployment) -> None:
    approval_id = pending_approval(deployed, WEB1, WEB1_DATA, "t-approve")
    as_reader = deployed.get("/console/approvals", user="reader").text
    assert approval_id in as_reader
    assert "You may read approvals here, not decide them" in as_reader
    assert 'name="token"' not in as_reader
    alice_page = deployed.get("/console/approvals", user="alice").text
    assert "will" in alice_page
    token = form_token(alice_page)

    own = post_decision(deployed, approval_id, "alice", {"decision": "approve", "token": token})
    assert own.status_code == 403
    assert "alice asked for this detach and may not approve it (four eyes)" in own.text
    reader = post_decision(deployed, approval_id, "reader", {"decision": "approve", "token": token})
    assert reader.status_code == 403  # alice's token is not the reader's
    no_token = post_decision(deployed, approval_id, "bob", {"decision": "approve"})
    assert no_token.status_code == 403
    assert "token is missing" in no_token.text
    bob_token = form_token(deployed.get("/console/approvals", user="bob").text)
    cross = post_decision(
        deployed,
        approval_id,
        "bob",
        {"decision": "approve", "token": bob_token},
        **{"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert "another site (cross-site)" in cross.text
    no_fetch_metadata = httpx.post(
        f"{deployed.url}/console/approvals/{approval_id}",
        data={"decision": "approve", "token": bob_token},
        auth=("bob", PASSWORDS["bob"]),
        headers={"Origin": "https://evil.example"},
        timeout=5,
    )
    assert no_fetch_metadata.status_code == 403
    assert "another origin" in no_fetch_metadata.text
    bad = post_decision(deployed, approval_id, "bob", {"decision": "maybe", "token": bob_token})
    assert bad.status_code == 400
    assert "decision: must be approve or deny" in bad.text
    assert deployed.runtime.detach.approvals is not None
    assert deployed.runtime.detach.approvals.get(approval_id).state.value == "pending"  # type: ignore[union-attr]

    decided = post_decision(
        deployed, approval_id, "bob", {"decision": "approve", "comment": "looked <ok>", "token": bob_token}
    )
    assert decided.status_code == 200
    assert "approved: the detach proceeds (bob)" in decided.text
    again = post_decision(deployed, approval_id, "bob", {"decision": "deny", "token": bob_token})
    assert again.status_code == 409
    # one trail: asked, waited for a person, approved by bob, detached by the turn that followed
    trail = trail_of(deployed, "t-approve", "succeeded")
    events = [step.event for step in trail.steps]
    assert events[:4] == ["detach.requested", "detach.pending_approval", "detach.approved", "detach.accepted"]
    assert events[-1] == "detach.result"
    approved = trail.steps[2].fields
    assert (approved["by"], approved["comment"]) == ("bob", "looked <ok>")
    assert approved["approval_id"] == approval_id
    page = deployed.get("/console", params={"q": "t-approve"}).text
    assert page.count("/console/request?id=") == 1  # not a second trail for the turn
    recent = deployed.get("/console/approvals").text
    assert "looked &lt;ok&gt;" in recent
    assert "No approval is waiting" in recent


def test_text_from_outside_is_escaped_everywhere(deployed: Deployment) -> None:
    key = '<script>alert("key")</script>'
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": key, "reason": "<i>r</i>"})
    trail = trail_of(deployed, key, "succeeded")
    pending_approval(deployed, WEB2, WEB2_DATA, "t-hostile")
    listing = deployed.get("/console").text
    assert "&lt;script&gt;alert(&#34;key&#34;)&lt;/script&gt;" in listing
    assert "<script" not in listing
    detail = deployed.get("/console/request", params={"id": trail.id}).text
    assert "&lt;i&gt;r&lt;/i&gt;" in detail
    approvals = deployed.get("/console/approvals").text
    assert "&lt;img src=x onerror=&#34;document.title=1&#34;&gt;&lt;b&gt;web-2&lt;/b&gt;" in approvals
    assert HOSTILE_NAME not in approvals


def test_in_flight_shows_the_job_followed_and_the_request_queued_behind_it(deployed: Deployment) -> None:
    deployed.backend.update_config({"job_duration_s": 60})
    first = deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "t-slow"})
    assert first["status"] == "accepted"
    second = deployed.detach({"server_id": WEB1, "volume_id": WEB1_LOGS, "idempotency_key": "t-behind"})
    assert second["status"] == "queued"

    def shown() -> str | None:
        page = deployed.get("/console/inflight").text
        return page if "RUNNING" in page and "No request is queued" not in page else None

    page = eventually(shown)
    assert first["job_id"] in page
    assert re.search(r"<td>(in [0-9.]+ (s|min)|due \([0-9.]+ s ago\))</td>", page)
    assert "No job is being followed" not in page
    assert WEB1_LOGS in page


def test_safety_shows_the_window_used_and_the_breaker(deployed: Deployment) -> None:
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "t-safety"})
    trail_of(deployed, "t-safety", "succeeded")
    page = deployed.get("/console/safety").text
    assert PID in page
    assert "<td>1 of 10</td>" in page
    assert "closed" in page
    blast = blast_radius(deployed.runtime.settings, deployed.runtime.store)
    for job in ("job-1", "job-2", "job-3"):
        blast.record_failure(PID, job)
    assert "open: no detach" in deployed.get("/console/safety").text


def test_plots_are_drawn_from_the_history(deployed: Deployment) -> None:
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "t-plot"})
    trail_of(deployed, "t-plot", "succeeded")
    page = deployed.get("/console/plots").text
    assert "1 requests in the last 24 hours" in page
    assert "1 jobs (accepted to result): median" in page
    assert "1 detaches (from the alert" in page
    assert re.search(r"<title>\d\d:00 UTC: 1 succeeded</title>", page)
    assert page.count("<svg") >= 3


@pytest.fixture
def without_history(tmp_path: Path) -> Iterator[Deployment]:
    yield from deployment(tmp_path, history="off")


def test_without_a_history_the_pages_say_so(without_history: Deployment) -> None:
    for path in PAGES:
        answer = without_history.get(path)
        assert answer.status_code == 200
    assert "The audit history is off" in without_history.get("/console").text


@pytest.fixture
def history_down(tmp_path: Path) -> Iterator[Deployment]:
    yield from deployment(tmp_path, history="postgresql://nobody@127.0.0.1:9/none?connect_timeout=1")


def test_a_history_that_does_not_answer_is_a_503_page(history_down: Deployment) -> None:
    answer = history_down.get("/console")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "the history did not answer" in answer.text
    assert history_down.get("/console/approvals").status_code == 200  # the store still answers


SECRET = "console-secret-0123456789abcdef0123456789"


@pytest.fixture
def without_approvals(tmp_path: Path) -> Iterator[Deployment]:
    yield from deployment(tmp_path, approval_mode="never", console_secret=SECRET)


def test_with_approvals_off_nothing_can_be_decided(without_approvals: Deployment) -> None:
    assert "Approvals are off" in without_approvals.get("/console/approvals").text
    settings = without_approvals.runtime.settings
    minted = ConsoleAuth(
        settings.console_users,
        WebhookAuthenticator(settings.webhook_auth()),
        auth_disabled=False,
        secret=SECRET.encode(),  # the same key signs the same tokens: instances behind one address
    )
    approval = "0" * 32
    bob = post_decision(
        without_approvals,
        approval,
        "bob",
        {"decision": "approve", "token": minted.token(Viewer("bob", True))},
    )
    assert bob.status_code == 404
    assert "approvals are off" in bob.text
    # the reader's own token is valid, and still decides nothing
    reader_token = minted.token(Viewer("reader", False))
    reader = post_decision(
        without_approvals, approval, "reader", {"decision": "approve", "token": reader_token}
    )
    assert reader.status_code == 403
    assert "you may read the console, not decide approvals" in reader.text

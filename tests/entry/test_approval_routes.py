"""The approval routes over real loopback HTTP (uvicorn, the Starlette app, the router, the
runtime on the emulator): who may decide, four eyes, the signed link's page and its refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler.core.approval import sign_link
from handler.entry.runtime import Runtime, build_runtime
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import WEB1, WEB1_DATA

SECRET = "link-secret-0123456789-0123456789-abcdef"
ALERTS = "alerts-token-0123456789"  # sends requests only
ALICE = "alice-token-0123456789"  # decides only
BOTH = "both-token-0123456789"  # sends and decides: four eyes keeps it from approving its own
PLAIN = "plain-token-0123456789"  # every route but poll and /approvals


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Runtime, str]]:
    settings = fast_settings(
        tmp_path,
        emulator.url,
        approval_mode="always",
        approval_link_secret=SECRET,
        approval_base_url="https://detach.example.com",
        webhook_bearer_tokens=[
            {"secret": ALERTS, "name": "alerts", "routes": ["/"]},
            {"secret": ALICE, "name": "alice", "routes": ["/approvals"]},
            {"secret": BOTH, "name": "bob", "routes": ["/", "/approvals"]},
            PLAIN,
        ],
    )
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    with BackgroundServer(runtime_app(runtime)) as server:
        yield runtime, server.url
    runtime.close()


def ask(url: str, token: str = ALERTS, **fields: Any) -> str:
    body = {"server_id": WEB1, "volume_id": WEB1_DATA, **fields}
    answer = httpx.post(f"{url}/", json=body, headers=bearer(token), timeout=10)
    assert answer.status_code == 202, answer.text
    (record,) = answer.json()["records"]
    assert record["status"] == "pending_approval"
    assert answer.json()["pending_approval"] == 1
    return str(record["approval_id"])


def run_jobs(runtime: Runtime, *, until: float = 10.0) -> list[str]:
    """Consume the jobs topic (as the worker does) until a result is published; the outcomes."""
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        for delivery in runtime.jobs.receive(10, wait=0.2):
            runtime.job_event(delivery.body)
            runtime.jobs.ack(delivery)
        results = runtime.results.receive(10, wait=0.1)
        types = [httpx.Response(200, content=r.body).json()["type"] for r in results]
        for delivery in results:
            runtime.results.ack(delivery)
        ended = [t for t in types if t != "ecs-detach.approval_requested"]
        if ended:
            return ended
    raise AssertionError("no result within the time")


def test_an_approver_decides_over_http_and_the_detach_follows(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = ask(url, origin={"credential": "someone-else"})  # a claimed identity is replaced

    shown = httpx.get(f"{url}/approvals/{approval_id}", headers=bearer(ALICE), timeout=10)
    assert shown.status_code == 200
    assert shown.json()["state"] == "pending"
    assert shown.json()["requested_by"] == ["alerts"]
    decided = httpx.post(
        f"{url}/approvals/{approval_id}",
        json={"decision": "approve", "comment": "checked"},
        headers=bearer(ALICE),
        timeout=10,
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["approval"]["decided_by"] == "alice"

    assert run_jobs(runtime) == ["ecs-detach.succeeded"]
    again = httpx.post(
        f"{url}/approvals/{approval_id}", json={"decision": "approve"}, headers=bearer(ALICE), timeout=10
    )
    assert (again.status_code, again.json()["result"]) == (200, "already")


def test_only_a_credential_naming_approvals_may_decide(served: tuple[Runtime, str]) -> None:
    _, url = served
    approval_id = ask(url)
    decision = {"decision": "approve"}

    for token in (ALERTS, PLAIN):
        refused = httpx.post(
            f"{url}/approvals/{approval_id}", json=decision, headers=bearer(token), timeout=10
        )
        assert refused.status_code == 403, token
    anonymous = httpx.post(f"{url}/approvals/{approval_id}", json=decision, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def test_four_eyes_over_http(served: tuple[Runtime, str]) -> None:
    _, url = served
    approval_id = ask(url, token=BOTH)

    refused = httpx.post(
        f"{url}/approvals/{approval_id}", json={"decision": "approve"}, headers=bearer(BOTH), timeout=10
    )

    assert refused.status_code == 403
    assert "four eyes" in refused.json()["detail"]
    assert refused.json()["approval"]["state"] == "pending"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"decision": "maybe"}', 422, "decision"),
        (b'{"decision": ["approve"]}', 422, "decision"),
        (b'{"decision": {"approve": 1}}', 422, "decision"),
        (b'{"decision": "approve", "comment": 5}', 422, "comment"),
        (b"not json", 400, None),
    ],
)
def test_a_bad_decision_is_refused_with_the_field(
    served: tuple[Runtime, str], body: bytes, status: int, field: str | None
) -> None:
    _, url = served
    approval_id = ask(url)
    headers = {**bearer(ALICE), "Content-Type": "application/json"}

    answer = httpx.post(f"{url}/approvals/{approval_id}", content=body, headers=headers, timeout=10)

    assert answer.status_code == status
    if field:
        assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_unknown_approvals_and_methods(served: tuple[Runtime, str]) -> None:
    _, url = served

    assert httpx.get(f"{url}/approvals/{'f' * 32}", headers=bearer(ALICE), timeout=10).status_code == 404
    assert httpx.get(f"{url}/approvals/nope", headers=bearer(ALICE), timeout=10).status_code == 404
    put = httpx.put(f"{url}/approvals/{'f' * 32}", headers=bearer(ALICE), timeout=10)
    assert (put.status_code, put.headers["Allow"]) == (405, "GET, POST")


# -- the signed link --------------------------------------------------------------------------------


def link(runtime: Runtime, approval_id: str, who: str = "carol") -> str:
    desk = runtime.detach.approvals
    assert desk is not None
    path = desk.link(approval_id, who)
    assert path.startswith(f"https://detach.example.com/approvals/{approval_id}/link/")
    return path.removeprefix("https://detach.example.com")


def test_the_link_page_shows_and_changes_nothing_then_its_form_decides(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = ask(url, reason="disk <full>")
    path = link(runtime, approval_id)

    page = httpx.get(f"{url}{path}", timeout=10)
    page_again = httpx.get(f"{url}{path}", timeout=10)

    assert page.status_code == page_again.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "web-1" in page.text
    assert "/dev/vdb" in page.text
    assert "disk &lt;full&gt;" in page.text  # escaped
    assert 'value="approve"' in page.text
    assert "carol" in page.text
    desk = runtime.detach.approvals
    assert desk is not None
    kept = desk.get(approval_id)
    assert kept is not None
    assert kept.state.value == "pending"

    denied = httpx.post(f"{url}{path}", data={"decision": "deny", "comment": "not now"}, timeout=10)
    assert denied.status_code == 200
    assert "denied" in denied.text
    again = httpx.post(f"{url}{path}", data={"decision": "approve"}, timeout=10)
    assert again.status_code == 409  # one-time: decided already
    after = httpx.get(f"{url}{path}", timeout=10)
    assert 'value="approve"' not in after.text
    assert run_jobs(runtime) == ["ecs-detach.rejected"]
    kept = desk.get(approval_id)
    assert kept is not None
    assert (kept.decided_by, kept.comment) == ("carol", "not now")


def test_forged_expired_and_foreign_links_are_refused(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = ask(url)
    other_id = ask(url, volume_id="2c4d6e8f-0000-4000-8000-00000000cccc")
    good = link(runtime, approval_id)
    token = good.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    forged = f"{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    expired = sign_link(SECRET.encode(), approval_id, "carol", int(time.time()) - 1)
    wrong_key = sign_link(b"x" * 40, approval_id, "carol", int(time.time()) + 600)

    for bad in (
        f"/approvals/{approval_id}/link/{forged}",
        f"/approvals/{approval_id}/link/{expired}",
        f"/approvals/{approval_id}/link/{wrong_key}",
        f"/approvals/{other_id}/link/{token}",
    ):
        answer = httpx.post(f"{url}{bad}", data={"decision": "approve"}, timeout=10)
        assert answer.status_code == 401, bad
    desk = runtime.detach.approvals
    assert desk is not None
    kept = desk.get(approval_id)
    assert kept is not None
    assert kept.state.value == "pending"


def test_a_link_for_the_requester_cannot_approve(served: tuple[Runtime, str]) -> None:
    runtime, url = served
    approval_id = ask(url)
    path = link(runtime, approval_id, who="alerts")

    answer = httpx.post(f"{url}{path}", data={"decision": "approve"}, timeout=10)

    assert answer.status_code == 403
    assert "four eyes" in answer.text

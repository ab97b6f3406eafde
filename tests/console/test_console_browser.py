"""The console in a real headless browser (Debian's Chromium driven by Playwright): the table
shows a request the test made, an approval clicked in the page completes the flow, a server
name with HTML in it is shown as text, and a form posted from another site is refused. Each
page's screenshot is written to $ECS_DETACH_SCREENSHOTS, by default a folder of the test run;
`make screenshots` writes them to docs/img/console-*.png, which the README and docs/console.md
show.

The browser is the system's (``/usr/bin/chromium``; Playwright's own download is never used).
Without it, or without the playwright package, the tests skip, except under CI=true, where
they fail: .ci/run installs Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from handler.local._serve import BackgroundServer
from tests.console.conftest import HOSTILE_NAME, PASSWORDS, Deployment
from tests.console.test_console_http import eventually, pending_approval, trail_of
from tests.support import WEB1, WEB1_DATA, WEB1_LOGS, WEB1_SYSTEM, WEB2, WEB2_DATA

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("ECS_DETACH_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true: .ci/run should have installed it")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def page_as(browser: Browser, user: str) -> Page:
    context = browser.new_context(
        http_credentials={"username": user, "password": PASSWORDS[user]},
        viewport={"width": 1400, "height": 800},
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: $ECS_DETACH_SCREENSHOTS (``make screenshots``: docs/img), else a
    folder of this run, so that a test run leaves the checkout as it was."""
    chosen = os.environ.get("ECS_DETACH_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} is too small to show the page"


def test_the_table_shows_a_request_the_test_made(
    browser: Browser, deployed: Deployment, screenshots: Path
) -> None:
    record = deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "browser-1"})
    trail_of(deployed, "browser-1", "succeeded")
    # a few neighbours, for a screenshot that shows what the table holds
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "browser-1"})  # again
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_SYSTEM, "idempotency_key": "browser-system-disk"})
    pending_approval(deployed, WEB2, WEB2_DATA, "browser-forced")
    trail_of(deployed, "browser-system-disk", "rejected")
    page = page_as(browser, "reader")
    page.goto(f"{deployed.url}/console")
    row = page.locator(
        "table.requests tbody tr", has_text="browser-1"
    ).last  # the first one, not its duplicate
    assert page.locator("table.requests tbody tr", has_text="browser-1").count() == 2
    assert row.locator(".outcome").inner_text() == "succeeded"
    assert WEB1 in row.inner_text()
    shoot(page, screenshots, "requests")

    page.fill("input[name=q]", "browser-1")
    page.select_option("select[name=outcome]", "succeeded")
    page.click("button[type=submit]")
    assert page.locator("table.requests tbody tr").count() == 1
    row.locator("a").click()
    assert page.locator("h1").inner_text().startswith("Request ")
    steps = page.locator("table.trail tbody tr td:nth-child(3)").all_inner_texts()
    assert steps[:2] == ["detach.requested", "detach.accepted"]
    assert steps[-1] == "detach.result"
    page.locator("details").last.locator("summary").click()  # a step's fields, without script
    assert page.locator("details").last.locator("dd", has_text=str(record["job_id"])).count() == 1
    shoot(page, screenshots, "trail")
    page.context.close()


def test_an_approval_clicked_in_the_page_completes_the_flow(
    browser: Browser, deployed: Deployment, screenshots: Path
) -> None:
    approval_id = pending_approval(deployed, WEB1, WEB1_DATA, "browser-approve")
    # alice asked for it: four eyes refuses her click
    alice = page_as(browser, "alice")
    alice.goto(f"{deployed.url}/console/approvals")
    alice.click(f"#approval-{approval_id} button.approve")
    assert "may not approve it (four eyes)" in alice.locator("p.problem").inner_text()
    alice.context.close()

    bob = page_as(browser, "bob")
    bob.goto(f"{deployed.url}/console/approvals")
    section = bob.locator(f"#approval-{approval_id}")
    assert "What will happen" in section.inner_text()
    shoot(bob, screenshots, "approvals")
    section.locator("input[name=comment]").fill("checked the mount")
    section.locator("button.approve").click()
    assert "approved: the detach proceeds (bob)" in bob.locator("p.done").inner_text()
    trail = trail_of(deployed, "browser-approve", "succeeded")
    assert any(step.event == "detach.accepted" for step in trail.steps)
    bob.goto(f"{deployed.url}/console/approvals")
    decided = bob.locator("table tbody tr", has_text="checked the mount")
    assert "approved" in decided.inner_text()
    assert "bob" in decided.inner_text()
    bob.context.close()


def test_a_server_name_with_html_in_it_is_shown_as_text(browser: Browser, deployed: Deployment) -> None:
    approval_id = pending_approval(deployed, WEB2, WEB2_DATA, "<b>browser-key</b>")
    page = page_as(browser, "reader")
    page.goto(f"{deployed.url}/console/approvals")
    section = page.locator(f"#approval-{approval_id}")
    assert HOSTILE_NAME in section.locator("h3").inner_text()
    assert HOSTILE_NAME in section.locator("table.preview").inner_text()
    assert page.locator("img").count() == 0  # no element was made of it
    assert section.locator("b", has_text="web-2").count() == 0
    assert page.title() == "Approvals · ecs-detach console"  # its onerror never ran
    page.goto(f"{deployed.url}/console")
    assert page.locator("td.id", has_text="<b>browser-key</b>").count() == 1
    assert page.locator("b", has_text="browser-key").count() == 0
    page.context.close()


def test_a_cross_site_post_is_refused(browser: Browser, deployed: Deployment) -> None:
    """A page of another site posts the approval form to the console, with bob's browser
    (which holds his login) and even with a token taken from his page: refused, undecided."""
    approval_id = pending_approval(deployed, WEB1, WEB1_DATA, "browser-csrf")
    bob = page_as(browser, "bob")
    bob.goto(f"{deployed.url}/console/approvals")
    token = bob.locator("input[name=token]").first.get_attribute("value")
    target = deployed.url.replace("127.0.0.1", "localhost") + f"/console/approvals/{approval_id}"
    evil = (
        f'<form method="post" action="{target}"><input type="hidden" name="token" value="{token}">'
        '<button name="decision" value="approve" id="go">win a prize</button></form>'
    )

    async def lure(_: object) -> HTMLResponse:
        return HTMLResponse(evil)

    with BackgroundServer(Starlette(routes=[Route("/", lure)])) as attacker:
        bob.goto(attacker.url)
        with bob.expect_navigation():
            bob.click("#go")
        assert (
            "a form sent from another site (cross-site) is refused" in bob.locator("p.problem").inner_text()
        )
    desk = deployed.runtime.detach.approvals
    assert desk is not None
    approval = desk.get(approval_id)
    assert approval is not None
    assert approval.state.value == "pending"
    bob.context.close()


def test_screenshots_of_in_flight_safety_and_plots(
    browser: Browser, deployed: Deployment, screenshots: Path
) -> None:
    for key, volume in (("shot-1", WEB1_DATA), ("shot-2", WEB2_DATA)):
        server = WEB1 if volume == WEB1_DATA else WEB2
        deployed.detach({"server_id": server, "volume_id": volume, "idempotency_key": key})
        trail_of(deployed, key, "succeeded")
    deployed.backend.update_config({"job_duration_s": 60})
    deployed.detach({"server_id": WEB1, "volume_id": WEB1_LOGS, "idempotency_key": "shot-running"})
    page = page_as(browser, "reader")

    def running() -> bool:
        page.goto(f"{deployed.url}/console/inflight")
        return "RUNNING" in page.inner_text("main")

    eventually(running)
    shoot(page, screenshots, "inflight")
    page.goto(f"{deployed.url}/console/safety")
    assert page.locator("table.safety tbody tr").count() == 1
    shoot(page, screenshots, "safety")
    page.goto(f"{deployed.url}/console/plots")
    assert page.locator("figure svg rect").count() >= 3
    shoot(page, screenshots, "plots")
    page.context.close()

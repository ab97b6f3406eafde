"""The console as a person reaches it: ``ecs-detach demo`` then ``ecs-detach up`` in the same
folder shows the demo's request with its whole trail (the issue's "done"), and
``ecs-detach console-password`` makes a hash the console accepts. Real processes, real ports."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from handler.security import check_password
from tests.entry.test_cli import CLI, _env, _free_port, _run, _wait_for_http


@pytest.mark.slow
def test_after_the_demo_up_shows_its_request_in_the_console(tmp_path: Path) -> None:
    demo = _run("demo", "--job-duration", "1", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    port, emulator_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [*CLI, "up", "--port", str(port), "--emulator-port", str(emulator_port)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_http(f"{url}/healthz")
        password_file = tmp_path / ".ecs-detach" / "console-password"
        assert password_file.stat().st_mode & 0o077 == 0  # owner only
        auth = ("admin", password_file.read_text().strip())
        assert httpx.get(f"{url}/console", timeout=5).status_code == 401
        listing = httpx.get(f"{url}/console", auth=auth, timeout=10)
        assert listing.status_code == 200
        assert "demo-web-1-vdb" in listing.text
        assert '<span class="outcome succeeded">succeeded</span>' in listing.text
        found = re.search(r'href="/console/request\?id=([0-9a-f]+)"', listing.text)
        assert found
        trail = httpx.get(f"{url}/console/request", params={"id": found[1]}, auth=auth, timeout=10).text
        steps = re.findall(r"<td>((?:detach|poll)\.[a-z_]+)</td>", trail)
        assert steps[:2] == ["detach.requested", "detach.accepted"]
        assert "poll.status" in steps
        assert steps[-1] == "detach.result"
        assert "disk /dev/vdb of web-1 reported I/O errors" in trail
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    assert f"web console       {url}/console  (user admin, password in" in out
    assert auth[1] not in out  # the password is never printed


def test_console_password_prints_a_hash_the_console_accepts(tmp_path: Path) -> None:
    made = subprocess.run(
        [*CLI, "console-password"], input="a long passphrase\n", capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr
    stored = made.stdout.strip()
    assert check_password(stored, "a long passphrase")
    short = subprocess.run(
        [*CLI, "console-password"], input="short\n", capture_output=True, text=True, check=False
    )
    assert short.returncode == 2
    assert "at least 8 characters" in short.stderr

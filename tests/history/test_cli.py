"""``ecs-detach history`` as a subprocess, on SQLite and PostgreSQL: newest first, each request
with its trail, the filters, JSON, text from outside shown escaped, and clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from handler.history import open_history
from tests.history.test_contract import JOB, SERVER_A, SERVER_B, a_request, step

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "handler.local.cli", "history"]


def run(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ECS_DETACH_HISTORY": url}
    return subprocess.run(
        [*CLI, *args], check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def fill(url: str) -> None:
    store = open_history(url)
    try:
        store.append(a_request("t-old", "k-old", SERVER_A, 0, job=JOB))
        store.append(
            [
                step(
                    "detach.requested",
                    60,
                    trail="t-new",
                    idempotency_key="k\x1b[2Jnew",
                    server_id=SERVER_B,
                    reason="disk stalled\n[fake] line",
                ),
                step("detach.refused_by_policy", 60.1, trail="t-new", server_id=SERVER_B, code="NotAllowed"),
                step("detach.result", 60.2, trail="t-new", outcome="rejected", error_code="NotAllowed"),
            ]
        )
    finally:
        store.close()


def test_lists_requests_newest_first_with_their_trails(history_url: str, tmp_path: Path) -> None:
    fill(history_url)
    shown = run(history_url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("2026-01-15T08:31:00.000Z  rejected  server " + SERVER_B)
    assert "\x1b" not in shown.stdout  # a key with a terminal escape is shown escaped
    assert "  key     k\\x1b[2Jnew" in lines
    assert not any(line.startswith("[fake]") for line in lines)  # no forged line
    assert any("detach.refused_by_policy" in line and "code=NotAllowed" in line for line in lines)
    old = lines.index(next(line for line in lines if "succeeded" in line and "server" in line))
    assert old > 3
    assert lines[old].endswith("(4.500s)")
    assert f"  job     {JOB}" in lines
    assert "  origin  fingerprint=f1 source=alertmanager" in lines
    assert any(
        line.startswith("  +2.000s") and "poll.status" in line and "status=RUNNING" in line for line in lines
    )


def test_filters_and_json(history_url: str, tmp_path: Path) -> None:
    fill(history_url)

    def trails(*args: str) -> list[str]:
        shown = run(history_url, "--json", *args, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        return [request["trail"] for request in json.loads(shown.stdout)["requests"]]

    assert trails() == ["t-new", "t-old"]
    assert trails("--server", SERVER_A) == ["t-old"]
    assert trails("--outcome", "rejected") == ["t-new"]
    assert trails("--key", "k-old") == ["t-old"]
    assert trails("--since", "2026-01-15T08:30:30Z") == ["t-new"]
    assert trails("--since", "1h") == []  # nothing that recent
    assert trails("--limit", "1") == ["t-new"]

    shown = run(history_url, "--json", "--key", "k-old", cwd=tmp_path)
    (request,) = json.loads(shown.stdout)["requests"]
    assert request["outcome"] == "succeeded"
    assert request["duration_s"] == 4.5
    poll = request["steps"][2]
    assert (poll["status"], poll["fields"]["status"]) == (None, "RUNNING")  # the job's status, apart
    assert request["steps"][-1]["status"] == "succeeded"
    assert [s["event"] for s in request["steps"]] == [
        "detach.requested",
        "detach.accepted",
        "poll.status",
        "detach.result",
    ]


def test_an_empty_history_says_so(tmp_path: Path) -> None:
    shown = run(f"sqlite:///{tmp_path}/history.db", cwd=tmp_path)
    assert (shown.returncode, shown.stdout) == (0, "no request in the history matches\n")


def test_failures_are_one_clear_line(tmp_path: Path) -> None:
    off = run("off", cwd=tmp_path)
    assert off.returncode == 2
    assert "ECS_DETACH_HISTORY is off" in off.stderr

    bad_since = run(f"sqlite:///{tmp_path}/h.db", "--since", "yesterday", cwd=tmp_path)
    assert bad_since.returncode == 2
    assert "--since 'yesterday'" in bad_since.stderr

    down = run("postgresql://ops:pw-9f8e7d@127.0.0.1:1/history", cwd=tmp_path)
    assert down.returncode == 4
    assert down.stderr.startswith("ecs-detach: cannot open the history postgresql://***@127.0.0.1:1/history")
    assert "pw-9f8e7d" not in down.stderr
    assert "Traceback" not in down.stderr

    wrong = run("mysql://db/history", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "supported: sqlite://, postgresql://" in wrong.stderr

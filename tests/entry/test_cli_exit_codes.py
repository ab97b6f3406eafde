"""The CLI maps known errors to one line and a documented exit code; a bug shows its traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from handler.cloud import EcsClient, TransportError
from handler.local.cli import EXIT_CLOUD, EXIT_UNAVAILABLE, EXIT_USAGE, _known_error
from tests.conftest import DEMO_CREDENTIALS
from tests.entry.test_cli import CLI, _env

SECRET = "s3cret-" + uuid.uuid4().hex[:10]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``ecs-detach worker`` against a loopback ECS endpoint that nothing serves (the worker
    calls no cloud API before it starts), with ``settings`` in its environment."""
    env = {**_env(), "ECS_DETACH_ECS_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", **settings}
    return subprocess.run(
        [*CLI, "worker", "--health-port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "code", "says"),
    [
        pytest.param(
            {"ECS_DETACH_POLL_TIMEOUT_S": "-1"},
            EXIT_USAGE,
            "ECS_DETACH_POLL_TIMEOUT_S: Input should be greater than 0",
            id="invalid setting",
        ),
        pytest.param(
            {"ECS_DETACH_WEBHOOK_BEARER_TOKENS": SECRET},  # not JSON: its value must not show
            EXIT_USAGE,
            "ECS_DETACH_WEBHOOK_BEARER_TOKENS: not valid JSON (Expecting value)",
            id="unparsable setting",
        ),
        pytest.param(
            {"ECS_DETACH_ECS_ENDPOINT": "", "ECS_DETACH_REGION": "eu/de"},
            EXIT_USAGE,
            "invalid region 'eu/de'",
            id="config error",
        ),
        pytest.param(
            {"ECS_DETACH_JOBS_TOPIC": f"kafka://user:{SECRET}@broker/x"},
            EXIT_USAGE,
            "topic URL kafka://***@broker/x has scheme 'kafka'",
            id="bad topic URL",
        ),
        pytest.param(
            {"ECS_DETACH_STORE": f"redis://:{SECRET}@cache/0#x"},
            EXIT_USAGE,
            "malformed redis store URL redis://***@cache/0",
            id="bad store URL",
        ),
        pytest.param(
            {"ECS_DETACH_JOBS_TOPIC": f"amqp://guest:{SECRET}@127.0.0.1:{{port}}/"},
            EXIT_UNAVAILABLE,
            "amqp topic 'jobs' at amqp://***@127.0.0.1:",
            id="topic unavailable",
        ),
        pytest.param(
            {"ECS_DETACH_STORE": "sqlite:///not-a-store.db"},
            EXIT_UNAVAILABLE,
            "not-a-store.db: file is not a database",
            id="store unusable",
        ),
    ],
)
def test_a_known_error_is_one_line_and_its_exit_code(
    settings: dict[str, str], code: int, says: str, tmp_path: Path
) -> None:
    (tmp_path / "not-a-store.db").write_text("not a database")
    settings = {key: value.replace("{port}", str(_closed_port())) for key, value in settings.items()}
    done = _worker(tmp_path, **settings)
    assert done.returncode == code, done.stderr
    last = done.stderr.splitlines()[-1]  # before it, at most a client library's own warnings
    assert last.startswith("ecs-detach: ")
    assert says in last
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_a_cloud_that_cannot_be_reached_exits_3_without_the_proxy_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = f"http://proxyuser:{SECRET}@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    ecs = EcsClient("https://ecs.example.invalid", DEMO_CREDENTIALS)
    try:
        with pytest.raises(TransportError) as caught:
            ecs.show_job("ff8080820000000000000000deadbeef")
    finally:
        ecs.close()
    known = _known_error(caught.value)
    assert known is not None
    code, message = known
    assert code == EXIT_CLOUD
    assert "ConnectError" in message
    assert SECRET not in message


def test_a_bad_argument_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text("{not json")
    done = subprocess.run(
        [*CLI, "invoke", "event.json"],
        check=False,
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_USAGE
    assert "argument file: event.json is not JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bug_shows_its_traceback(tmp_path: Path) -> None:
    # A command with a bug in it: the CLI must not pass it off as a usage error.
    program = (
        "import sys\n"
        "from handler.local import cli\n"
        "def broken(args):\n"
        "    raise ValueError('a bug in a command')\n"
        "cli._emulator = broken\n"
        "sys.exit(cli.main(['emulator']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        check=False,
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: a bug in a command" in done.stderr

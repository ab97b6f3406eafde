"""``ecs-detach detach`` honours every safety setting, as a person runs it: a real process
against the emulator on a real port, with the deployment's own store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from handler.entry.runtime import build_runtime
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import CLUSTER1, SHARED, WEB1, WEB1_DATA, WEB2

CLI = [sys.executable, "-m", "handler.local.cli"]


def detach(emulator: Emulator, cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "ECS_DETACH_"))}
    env |= {f"ECS_DETACH_{name.upper()}": value for name, value in settings.items()}
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [*CLI, "detach", "--endpoint", emulator.url, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def deletes(emulator: Emulator) -> list[str]:
    calls = emulator.admin("GET", "calls")["calls"]
    return [c["path"] for c in calls if c["method"] == "DELETE"]


DISK = ("--server-id", WEB1, "--volume-id", WEB1_DATA)
KEY = ("--idempotency-key", "ticket-7")


@pytest.mark.parametrize("how", ["setting", "flag"])
@pytest.mark.slow
def test_a_dry_run_detaches_nothing(emulator: Emulator, tmp_path: Path, how: str) -> None:
    done = (
        detach(emulator, tmp_path, *DISK, dry_run="true")
        if how == "setting"
        else detach(emulator, tmp_path, *DISK, "--dry-run")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry_run" in done.stdout
    assert f"would detach volume {WEB1_DATA}" in done.stdout
    assert deletes(emulator) == []
    # the rehearsal kept nothing: the real command afterwards detaches
    real = detach(emulator, tmp_path, *DISK)
    assert real.returncode == 0, real.stdout + real.stderr
    assert len(deletes(emulator)) == 1


def test_the_server_allowlist_is_honoured(emulator: Emulator, tmp_path: Path) -> None:
    done = detach(emulator, tmp_path, *DISK, allowed_servers=json.dumps([WEB2]))
    assert done.returncode == 1
    assert "PolicyServerNotAllowed" in done.stdout
    assert deletes(emulator) == []


def test_force_is_refused_unless_the_policy_allows_it(emulator: Emulator, tmp_path: Path) -> None:
    refused = detach(emulator, tmp_path, *DISK, "--force")
    assert refused.returncode == 1
    assert "PolicyForceNotAllowed" in refused.stdout
    assert deletes(emulator) == []

    allowed = detach(emulator, tmp_path / "other", *DISK, "--force", allow_force="true")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "accepted" in allowed.stdout
    assert len(deletes(emulator)) == 1


def test_a_shared_disk_is_refused_unless_allowed(emulator: Emulator, tmp_path: Path) -> None:
    shared = ("--server-id", CLUSTER1, "--volume-id", SHARED)
    refused = detach(emulator, tmp_path, *shared)
    assert refused.returncode == 1
    assert "PolicySharedDisk" in refused.stdout

    allowed = detach(emulator, tmp_path / "other", *shared, allow_shared_disks="true")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert len(deletes(emulator)) == 1


def test_a_webhook_request_and_the_same_cli_detach_meet_in_the_store(
    emulator: Emulator, tmp_path: Path
) -> None:
    settings = fast_settings(tmp_path, emulator.url)
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    try:
        app = runtime_app(runtime)
        with BackgroundServer(app) as server:
            sent = httpx.post(
                f"{server.url}/", json={"server_id": WEB1, "volume_id": WEB1_DATA}, headers=AUTH, timeout=10
            )
    finally:
        runtime.close()
    assert sent.status_code == 202

    done = detach(emulator, tmp_path, *DISK, store=settings.store, jobs_topic=settings.jobs_topic)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "duplicate (accepted)" in done.stdout
    assert sent.json()["job_ids"][0] in done.stdout
    assert len(deletes(emulator)) == 1


def test_a_refusal_by_the_store_of_another_disk_is_exit_1(emulator: Emulator, tmp_path: Path) -> None:
    first = detach(emulator, tmp_path, *DISK, *KEY)
    other = detach(
        emulator, tmp_path, "--server-id", WEB2, "--device", "vdb", "--idempotency-key", "ticket-7"
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert other.returncode == 1
    assert "IdempotencyConflict" in other.stdout
    assert len(deletes(emulator)) == 1

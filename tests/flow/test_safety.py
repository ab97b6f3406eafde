"""Safe to point at production: policy before any mutating call, dry-run, exactly one detach."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from handler.core.models import Outcome
from handler.core.outcomes import DetachStatus
from handler.entry.runtime import Runtime, build_runtime
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import (
    CLUSTER1,
    DB1_DATA,
    DB1_SHUTOFF,
    DB1_SYSTEM,
    PID,
    SHARED,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
    WEB1_SYSTEM,
    WEB2,
    WEB2_DATA,
)


@pytest.fixture
def make_runtime(tmp_path: Path, emulator: Emulator) -> Iterator[Any]:
    built: list[Runtime] = []

    def make(**settings: Any) -> Runtime:
        runtime = build_runtime(
            fast_settings(tmp_path / str(len(built)), emulator.url, **settings), DEMO_CREDENTIALS
        )
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.close()


def _deletes(emulator: Emulator) -> int:
    return [c["method"] for c in emulator.admin("GET", "calls")["calls"]].count("DELETE")


def _detach(runtime: Runtime, **body: Any) -> Any:
    return runtime.detach(parse_request(body))


@pytest.mark.parametrize(
    ("settings", "body", "code"),
    [
        ({}, {"server_id": WEB1, "volume_id": WEB1_SYSTEM}, "PolicySystemDisk"),
        (
            {"allow_system_disk_when_stopped": True},
            {"server_id": WEB1, "volume_id": WEB1_SYSTEM},
            "PolicySystemDiskRunning",
        ),
        ({}, {"server_id": CLUSTER1, "volume_id": SHARED}, "PolicySharedDisk"),
        ({}, {"server_id": WEB1, "volume_id": WEB1_DATA, "delete_flag": 1}, "PolicyForceNotAllowed"),
        (
            {"required_tag": "auto-remediation=true"},
            {"server_id": DB1_SHUTOFF, "volume_id": DB1_DATA},
            "PolicyTagMissing",
        ),
        (
            {"allowed_projects": ["f" * 32]},
            {"server_id": WEB1, "volume_id": WEB1_DATA},
            "PolicyProjectNotAllowed",
        ),
        (
            {"allowed_servers": [DB1_SHUTOFF]},
            {"server_id": WEB1, "volume_id": WEB1_DATA},
            "PolicyServerNotAllowed",
        ),
    ],
)
def test_policy_refuses_before_any_mutating_call(
    make_runtime: Any, emulator: Emulator, settings: dict[str, Any], body: dict[str, Any], code: str
) -> None:
    runtime = make_runtime(**settings)
    outcome = _detach(runtime, **body)
    assert outcome.status is DetachStatus.REJECTED
    assert outcome.result.error_code == code
    assert outcome.result.fail_reason  # a reason a person can act on
    assert _deletes(emulator) == 0
    (delivery,) = runtime.results.receive(1)
    assert '"outcome":"rejected"' in delivery.body  # refusals are reported, never silent


@pytest.mark.parametrize(
    ("settings", "body"),
    [
        ({"allow_system_disk_when_stopped": True}, {"server_id": DB1_SHUTOFF, "volume_id": DB1_SYSTEM}),
        ({"allow_shared_disks": True}, {"server_id": CLUSTER1, "volume_id": SHARED}),
        ({"allow_force": True}, {"server_id": WEB1, "volume_id": WEB1_DATA, "delete_flag": 1}),
        ({"required_tag": "auto-remediation=true"}, {"server_id": WEB1, "volume_id": WEB1_DATA}),
        ({"allowed_projects": [PID], "allowed_servers": [WEB1]}, {"server_id": WEB1, "volume_id": WEB1_DATA}),
    ],
)
def test_each_permission_allows_what_it_names(
    make_runtime: Any, emulator: Emulator, settings: dict[str, Any], body: dict[str, Any]
) -> None:
    outcome = _detach(make_runtime(**settings), **body)
    assert outcome.status is DetachStatus.ACCEPTED, outcome.reason
    assert _deletes(emulator) == 1


@pytest.mark.parametrize("disk", [{"volume_id": WEB1_DATA}, {"device": "vdb"}])
def test_a_detach_reads_the_server_and_the_volume_then_detaches(
    make_runtime: Any, emulator: Emulator, disk: dict[str, str]
) -> None:
    """Three calls: the server's own view names the disk and its boot index, so the block
    devices are not read; EVS says whether the disk is shared."""
    outcome = _detach(make_runtime(), server_id=WEB1, **disk)
    assert outcome.status is DetachStatus.ACCEPTED, outcome.reason
    calls = [(c["method"], c["path"].rsplit("/", 2)[-2:]) for c in emulator.admin("GET", "calls")["calls"]]
    assert [method for method, _ in calls] == ["GET", "GET", "DELETE"], calls
    assert not any("block_device" in part for _, path in calls for part in path)


def test_a_policy_that_allows_shared_disks_does_not_ask_evs(make_runtime: Any, emulator: Emulator) -> None:
    outcome = _detach(make_runtime(allow_shared_disks=True), server_id=WEB1, volume_id=WEB1_DATA)
    assert outcome.status is DetachStatus.ACCEPTED, outcome.reason
    calls = [(c["method"], c["path"]) for c in emulator.admin("GET", "calls")["calls"]]
    assert [method for method, _ in calls] == ["GET", "DELETE"], calls
    assert "/cloudservers/" in calls[0][1]


@pytest.mark.parametrize("globally", [False, True])
def test_dry_run_makes_no_mutating_call(make_runtime: Any, emulator: Emulator, globally: bool) -> None:
    runtime = make_runtime(dry_run=globally)
    body = {"server_id": WEB1, "device": "vdb", **({} if globally else {"dry_run": True})}
    outcome = _detach(runtime, **body)
    assert outcome.status is DetachStatus.DRY_RUN
    assert outcome.result.outcome is Outcome.DRY_RUN
    assert "would detach volume" in outcome.result.fail_reason
    assert outcome.result.volume_id == WEB1_DATA  # everything up to the call ran: the device resolved
    assert _deletes(emulator) == 0
    # the locks were given back: a real detach can follow at once
    real = _detach(make_runtime(), server_id=WEB1, volume_id=WEB1_DATA, idempotency_key="real")
    assert real.status is DetachStatus.ACCEPTED


@pytest.mark.slow
def test_a_thousand_concurrent_identical_deliveries_detach_once(
    make_runtime: Any, emulator: Emulator
) -> None:
    runtime = make_runtime()
    request = parse_request({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "storm-1"})
    start = threading.Barrier(16)

    def deliver(_: int) -> DetachStatus:
        if not start.broken:
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=5)  # the first 16 deliveries start together
        return runtime.detach(request).status

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(deliver, range(1000)))
    assert statuses.count(DetachStatus.ACCEPTED) == 1
    assert set(statuses) <= {DetachStatus.ACCEPTED, DetachStatus.DUPLICATE, DetachStatus.RETRY}
    assert _deletes(emulator) == 1
    assert runtime.jobs.pending() == 1  # one job to follow


def test_the_blast_radius_limits_detaches_per_window(make_runtime: Any, emulator: Emulator) -> None:
    runtime = make_runtime(max_detaches_per_window=1)
    # A detach call the cloud refuses detaches nothing: its slot is given back.
    emulator.admin(
        "PUT", "faults", {"errors": [{"rate": 1.0, "methods": ["DELETE"], "status": 400, "code": "Ecs.0005"}]}
    )
    refused_by_cloud = _detach(runtime, server_id=WEB1, volume_id=WEB1_DATA)
    assert refused_by_cloud.error_code == "Ecs.0005"
    emulator.admin("PUT", "faults", {})
    assert _detach(runtime, server_id=WEB1, volume_id=WEB1_LOGS).status is DetachStatus.ACCEPTED
    limited = _detach(runtime, server_id=WEB2, volume_id=WEB2_DATA)
    assert limited.status is DetachStatus.RETRY  # for now: the same request goes through later
    assert "BlastRadiusLimit" in limited.reason
    assert runtime.store.peek(f"{PID}/{WEB2}/{WEB2_DATA}") is None  # its key is free for that retry
    assert _deletes(emulator) == 2  # the limited one never reached the cloud


def test_the_circuit_breaker_stops_acting_after_failures(make_runtime: Any, emulator: Emulator) -> None:
    runtime = make_runtime(breaker_failures=1)
    emulator.admin(
        "PATCH",
        f"volumes/{WEB1_DATA}",
        {"detach_fails_with": {"error_code": "Ecs.1000", "fail_reason": "Nova timed out"}},
    )
    accepted = _detach(runtime, server_id=WEB1, volume_id=WEB1_DATA)
    assert accepted.status is DetachStatus.ACCEPTED
    worker = Worker(runtime.jobs, poll_job(runtime), wait_s=0.1).start()
    try:
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            for delivery in runtime.results.receive(1, wait=0.2):
                runtime.results.ack(delivery)
                outcome = json.loads(delivery.body)["data"]["outcome"]
    finally:
        worker.stop()
    assert outcome == "failed"
    refused = _detach(runtime, server_id=WEB2, volume_id=WEB2_DATA)
    assert refused.status is DetachStatus.RETRY  # not for good: the breaker closes again
    assert "CircuitOpen" in refused.reason
    assert runtime.store.peek(f"{PID}/{WEB2}/{WEB2_DATA}") is None
    assert _deletes(emulator) == 1

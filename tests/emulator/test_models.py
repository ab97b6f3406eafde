"""The backend and its job engine, driven by a fake clock (no HTTP, no sleeping)."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from emulator import DEMO_CREDENTIAL, EcsBackend, EcsError, EmulatorConfig, EmulatorCredential
from emulator.models import (
    AVAILABLE,
    DETACHING,
    FAIL,
    IN_USE,
    INIT,
    RUNNING,
    SUCCESS,
    JobFailure,
    VolumeFault,
)
from tests.support import (
    BATCH1_DATA,
    BATCH1_LOCKED,
    CLUSTER1,
    CLUSTER2,
    DB1_DATA,
    DB1_SHUTOFF,
    DB1_SYSTEM,
    PID,
    SHARED,
    SPARE,
    UNKNOWN,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
    WEB1_SYSTEM,
    WEB2,
    WEB2_DATA,
    FakeClock,
)


def attached_ids(backend: EcsBackend, server_id: str) -> list[str]:
    return [v.volume.id for v in backend.get_server(PID, server_id).volumes]


def volume_status(backend: EcsBackend, volume_id: str) -> str:
    return next(v.status for v in backend.snapshot().volumes if v.id == volume_id)


def test_detach_job_goes_init_running_success_and_detaches_only_at_success(
    backend: EcsBackend, clock: FakeClock
) -> None:
    job = backend.detach_volume(PID, WEB1, WEB1_DATA, "0")
    assert len(job.id) == 32
    assert (job.status, job.job_type) == (INIT, "detachVolume")
    assert volume_status(backend, WEB1_DATA) == DETACHING

    clock.advance(0.49)
    assert backend.get_job(PID, job.id).status == INIT
    clock.advance(0.01)
    assert backend.get_job(PID, job.id).status == RUNNING
    clock.advance(2.49)
    assert backend.get_job(PID, job.id).status == RUNNING
    assert WEB1_DATA in attached_ids(backend, WEB1)
    assert backend.ledger()[1] == []

    clock.advance(0.01)
    done = backend.get_job(PID, job.id)
    assert done.status == SUCCESS
    assert done.end == pytest.approx(job.begin + 3.0)
    assert attached_ids(backend, WEB1) == [WEB1_SYSTEM, WEB1_LOGS]
    assert volume_status(backend, WEB1_DATA) == AVAILABLE
    (detach,) = backend.ledger()[1]
    assert (detach.server_id, detach.volume_id, detach.job_id) == (WEB1, WEB1_DATA, job.id)


def test_jobs_finishing_between_calls_are_applied_in_order(backend: EcsBackend, clock: FakeClock) -> None:
    backend.set_volume_fault(WEB2_DATA, VolumeFault(job_duration_s=5.0))
    slow = backend.detach_volume(PID, WEB2, WEB2_DATA)
    fast = backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(60)
    assert [d.job_id for d in backend.ledger()[1]] == [fast.id, slow.id]


def test_injected_failure_keeps_the_disk_attached(backend: EcsBackend, clock: FakeClock) -> None:
    failure = JobFailure("Ecs.1000", "EVS detach timed out")
    backend.set_volume_fault(WEB1_DATA, VolumeFault(detach_fails_with=failure))
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(3)
    done = backend.get_job(PID, job.id)
    assert done.status == FAIL
    assert done.failure == failure
    assert WEB1_DATA in attached_ids(backend, WEB1)
    assert volume_status(backend, WEB1_DATA) == IN_USE
    assert backend.ledger()[1] == []


def test_fault_persists_until_cleared(backend: EcsBackend, clock: FakeClock) -> None:
    backend.set_volume_fault(WEB1_DATA, VolumeFault(JobFailure("Ecs.1000", "no")))
    for _ in range(2):
        job = backend.detach_volume(PID, WEB1, WEB1_DATA)
        clock.advance(3)
        assert backend.get_job(PID, job.id).status == FAIL
    backend.set_volume_fault(WEB1_DATA, VolumeFault())
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(3)
    assert backend.get_job(PID, job.id).status == SUCCESS


def test_injected_duration_applies_to_that_volume(backend: EcsBackend, clock: FakeClock) -> None:
    backend.set_volume_fault(WEB1_DATA, VolumeFault(job_duration_s=30.0))
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(29.9)
    assert backend.get_job(PID, job.id).status == RUNNING
    clock.advance(0.1)
    assert backend.get_job(PID, job.id).status == SUCCESS


def test_a_job_never_ends_before_its_init_phase(backend: EcsBackend, clock: FakeClock) -> None:
    backend.update_config({"job_init_s": 2.0, "job_duration_s": 0.5})
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(1.9)
    assert backend.get_job(PID, job.id).status == INIT
    clock.advance(0.1)
    assert backend.get_job(PID, job.id).status == SUCCESS


def test_busy_server_refuses_a_second_volume_job(backend: EcsBackend, clock: FakeClock) -> None:
    backend.detach_volume(PID, WEB1, WEB1_DATA)
    for call in (
        lambda: backend.detach_volume(PID, WEB1, WEB1_LOGS),
        lambda: backend.attach_volume(PID, WEB1, SPARE),
        lambda: backend.detach_volume(PID, WEB1, WEB1_DATA),
    ):
        with pytest.raises(EcsError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (501, "Ecs.0603")
    backend.detach_volume(PID, WEB2, WEB2_DATA)  # other servers are not affected
    clock.advance(3)
    assert backend.detach_volume(PID, WEB1, WEB1_LOGS).status == INIT


@pytest.mark.parametrize(
    ("server_id", "volume_id", "flag", "status", "code", "text"),
    [
        ("not-a-uuid", WEB1_DATA, "0", 400, "Ecs.0005", "server_id"),
        (WEB1, "2c4d6e8f", "0", 400, "Ecs.0005", "volume_id"),
        (WEB1, WEB1_DATA, "2", 400, "Ecs.0005", "delete_flag"),
        (WEB1.replace("aaaa", "ffff"), WEB1_DATA, "0", 404, "Ecs.0114", "does not exist"),
        (WEB1, UNKNOWN, "0", 400, "Ecs.1000", "itemNotFound"),
        (WEB1, WEB2_DATA, "0", 400, "Ecs.0111", "not attached"),
        (WEB1, SPARE, None, 400, "Ecs.0111", "not attached"),
        (BATCH1_LOCKED, BATCH1_DATA, "0", 400, "Ecs.0605", "locked"),
        (WEB1, WEB1_SYSTEM, "0", 400, "Ecs.0100", "system disk"),
        (DB1_SHUTOFF, DB1_SYSTEM, "1", 400, "Ecs.0005", "delete_flag"),
    ],
)
def test_detach_errors(
    backend: EcsBackend,
    server_id: str,
    volume_id: str,
    flag: str | None,
    status: int,
    code: str,
    text: str,
) -> None:
    with pytest.raises(EcsError) as caught:
        backend.detach_volume(PID, server_id, volume_id, flag)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert text in caught.value.message


def test_system_disk_detaches_from_a_stopped_server(backend: EcsBackend, clock: FakeClock) -> None:
    backend.detach_volume(PID, DB1_SHUTOFF, DB1_SYSTEM, "0")
    clock.advance(3)
    assert attached_ids(backend, DB1_SHUTOFF) == [DB1_DATA]


def test_force_detach_of_a_data_disk_is_accepted(backend: EcsBackend) -> None:
    assert backend.detach_volume(PID, WEB1, WEB1_DATA, "1").status == INIT


def test_a_disk_already_detaching_cannot_be_detached_again(backend: EcsBackend) -> None:
    backend.detach_volume(PID, CLUSTER1, SHARED)
    with pytest.raises(EcsError) as caught:
        backend.detach_volume(PID, CLUSTER2, SHARED)
    assert (caught.value.status, caught.value.code) == (400, "Ecs.0102")


def test_shared_disk_stays_in_use_until_its_last_detach(backend: EcsBackend, clock: FakeClock) -> None:
    backend.detach_volume(PID, CLUSTER1, SHARED)
    clock.advance(3)
    assert volume_status(backend, SHARED) == IN_USE
    backend.detach_volume(PID, CLUSTER2, SHARED)
    clock.advance(3)
    assert volume_status(backend, SHARED) == AVAILABLE


def test_another_projects_server_is_invisible(clock: FakeClock) -> None:
    other = EmulatorCredential("OTHERAK", "other-secret", project_id="f" * 32)
    backend = EcsBackend.from_seed(
        {"servers": [{"id": WEB1, "name": "x"}]},
        credentials=[DEMO_CREDENTIAL, other],
        config=EmulatorConfig(),
        clock=clock,
    )
    with pytest.raises(EcsError) as caught:
        backend.get_server(other.project_id, WEB1)
    assert caught.value.code == "Ecs.0114"
    assert backend.get_server(PID, WEB1).server.project_id == PID


def test_seed_belongs_to_the_first_credentials_project(clock: FakeClock) -> None:
    own = EmulatorCredential("MYAK", "my-secret", project_id="a" * 32)
    backend = EcsBackend.from_seed(
        {"servers": [{"id": WEB1, "name": "x"}]}, credentials=[own], config=EmulatorConfig()
    )
    assert backend.get_server("a" * 32, WEB1).server.name == "x"


def test_finished_jobs_are_forgotten_after_retention(backend: EcsBackend, clock: FakeClock) -> None:
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(3 + 86_399)
    assert backend.get_job(PID, job.id).status == SUCCESS
    clock.advance(1)
    with pytest.raises(EcsError) as caught:
        backend.get_job(PID, job.id)
    assert (caught.value.status, caught.value.code) == (404, "Common.0024")


def test_unknown_job_and_another_projects_job_are_404(backend: EcsBackend) -> None:
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    for project, job_id in ((PID, "0" * 32), ("f" * 32, job.id)):
        with pytest.raises(EcsError) as caught:
            backend.get_job(project, job_id)
        assert caught.value.code == "Common.0024"


def test_attach_then_detach_round_trip(backend: EcsBackend, clock: FakeClock) -> None:
    job = backend.attach_volume(PID, WEB1, SPARE)
    assert (job.job_type, job.device) == ("attachVolume", "/dev/vdd")
    clock.advance(3)
    assert backend.get_job(PID, job.id).status == SUCCESS
    attached = backend.get_attachment(PID, WEB1, SPARE)
    assert (attached.attachment.device, attached.attachment.boot_index) == ("/dev/vdd", -1)
    assert volume_status(backend, SPARE) == IN_USE

    backend.detach_volume(PID, WEB1, SPARE)
    clock.advance(3)
    assert SPARE not in attached_ids(backend, WEB1)
    assert volume_status(backend, SPARE) == AVAILABLE


def test_attach_fills_the_first_free_device_name(backend: EcsBackend, clock: FakeClock) -> None:
    backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(3)
    assert backend.attach_volume(PID, WEB1, SPARE).device == "/dev/vdb"


def test_attach_a_shared_disk_to_a_third_server(backend: EcsBackend, clock: FakeClock) -> None:
    backend.attach_volume(PID, WEB2, SHARED, "/dev/vdk")
    clock.advance(3)
    servers = backend.snapshot().servers
    holders = [d.server.id for d in servers if any(v.volume.id == SHARED for v in d.volumes)]
    assert sorted(holders) == sorted([WEB2, CLUSTER1, CLUSTER2])
    assert backend.get_attachment(PID, WEB2, SHARED).attachment.device == "/dev/vdk"


@pytest.mark.parametrize(
    ("server_id", "volume_id", "device", "status", "code"),
    [
        (WEB2, WEB1_DATA, None, 400, "Ecs.0102"),  # attached elsewhere, not shared
        (WEB1, WEB1_DATA, None, 400, "Ecs.0102"),  # already on this server
        (WEB1, SPARE, "/dev/vdb", 400, "Ecs.0005"),  # device in use
        (WEB1, SPARE, "vdz", 400, "Ecs.0005"),  # not a device name
        (WEB1, "nope", None, 400, "Ecs.0005"),
        (WEB1, UNKNOWN, None, 400, "Ecs.1000"),
        (BATCH1_LOCKED, SPARE, None, 400, "Ecs.0605"),
        (WEB1.replace("aaaa", "ffff"), SPARE, None, 404, "Ecs.0114"),
    ],
)
def test_attach_errors(
    backend: EcsBackend, server_id: str, volume_id: str, device: str | None, status: int, code: str
) -> None:
    with pytest.raises(EcsError) as caught:
        backend.attach_volume(PID, server_id, volume_id, device)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_get_attachment_of_a_detached_disk_is_404(backend: EcsBackend) -> None:
    with pytest.raises(EcsError) as caught:
        backend.get_attachment(PID, WEB1, WEB2_DATA)
    assert (caught.value.status, caught.value.code) == (404, "Ecs.0111")


def test_list_servers_filters_and_pages(backend: EcsBackend) -> None:
    def names(**kwargs: object) -> tuple[int, list[str]]:
        count, page = backend.list_servers(PID, **kwargs)  # type: ignore[arg-type]
        return count, [d.server.name for d in page]

    assert names() == (6, ["web-1", "web-2", "db-1", "batch-1", "cluster-1", "cluster-2"])
    assert names(name="web") == (2, ["web-1", "web-2"])
    assert names(name="c.uster-2") == (1, ["cluster-2"])
    assert names(status="shutoff") == (1, ["db-1"])
    assert names(limit=2, offset=2) == (6, ["db-1", "batch-1"])
    assert names(limit=2, offset=0) == names(limit=2, offset=1)
    assert names(limit=4, offset=3) == (6, [])
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        with pytest.raises(EcsError, match=r"Ecs\.0005"):
            names(**bad)


def test_free_slots_count_disks_by_bus(backend: EcsBackend) -> None:
    assert backend.get_server(PID, WEB1).free_slots() == (60, 21, 21)
    assert backend.get_server(PID, CLUSTER1).free_slots() == (59, 23, 22)


def test_reset_restores_the_seed_and_keeps_the_config(backend: EcsBackend, clock: FakeClock) -> None:
    backend.update_config({"job_duration_s": 1.0})
    backend.set_volume_fault(WEB1_LOGS, VolumeFault(job_duration_s=9.0))
    backend.detach_volume(PID, WEB1, WEB1_DATA)
    clock.advance(1)
    backend.reset()
    snapshot = backend.snapshot()
    assert snapshot.jobs == ()
    assert snapshot.faults == {}
    assert backend.ledger() == ([], [])
    assert WEB1_DATA in attached_ids(backend, WEB1)
    assert snapshot.config.job_duration_s == 1.0


def test_config_updates_are_validated(backend: EcsBackend) -> None:
    assert backend.update_config({"job_init_s": 0}).job_init_s == 0
    with pytest.raises(ValidationError):
        backend.update_config({"job_init_s": -1})
    with pytest.raises(ValidationError):
        backend.update_config({"no_such_field": 1})


def test_unknown_volume_fault_raises_key_error(backend: EcsBackend) -> None:
    with pytest.raises(KeyError):
        backend.set_volume_fault(UNKNOWN, VolumeFault())


def test_concurrent_detaches_of_one_disk_start_one_job(backend: EcsBackend) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            outcomes.append(backend.detach_volume(PID, WEB1, WEB1_DATA).status)
        except EcsError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["Ecs.0603"] * 7 + [INIT]


def test_credentials_are_described_without_secrets(backend: EcsBackend) -> None:
    temporary = EmulatorCredential("TMPAK", "tmp-secret", security_token="tok-123")
    both = EcsBackend(credentials=[DEMO_CREDENTIAL, temporary])
    lines = both.describe_credentials()
    assert lines[0] == f"AK DEMOACCESSKEY0000000, project {PID}"
    assert "with security token" in lines[1]
    text = " ".join(lines) + repr(temporary) + repr(DEMO_CREDENTIAL)
    assert DEMO_CREDENTIAL.secret_key not in text
    assert "tmp-secret" not in text
    assert "tok-123" not in text


def test_backend_needs_distinct_credentials() -> None:
    with pytest.raises(ValueError, match="at least one"):
        EcsBackend(credentials=[])
    with pytest.raises(ValueError, match="share"):
        EcsBackend(credentials=[DEMO_CREDENTIAL, DEMO_CREDENTIAL])

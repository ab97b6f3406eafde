"""The outbox relay, branch by branch, on the fake clock: every accepted detach ends in a result
even when nobody retries its request (tests/functions/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from handler.core.models import DetachRequest
from handler.core.outcomes import DetachStatus, record_http_status
from handler.functions.relay import Relay, RelayReport
from handler.store import ClaimState
from tests.functions.conftest import Functions, World, build
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2, WEB2_DATA

KEY = "alert-7"
RELAY_AFTER_S = 20.0
CLAIM_S = 60.0  # the claim build() gives a key: a dead owner's holds this long


class Killed(BaseException):
    """The instance dies here: nothing more of it runs (not even its ``finally`` clauses matter,
    since nothing after the publish is in one)."""


def request(**fields: Any) -> DetachRequest:
    return DetachRequest.model_validate(
        {
            "server_id": WEB1,
            "volume_id": WEB1_DATA,
            "idempotency_key": KEY,
            "alert_id": "am-42",
            "reason": "disk full",
            "origin": {"source": "alertmanager"},
            **fields,
        }
    )


def die_at_the_publish(world: World, *, after_it: bool = False) -> None:
    """The next publish to the jobs topic kills the instance, before (or just after) it goes out."""
    publish = world.jobs.publish

    def dying(body: str, *, delay: float = 0.0) -> str:
        world.jobs.publish = publish  # type: ignore[method-assign]  # only this instance dies
        if after_it:
            publish(body, delay=delay)
        raise Killed

    world.jobs.publish = dying  # type: ignore[method-assign]


def relay(fns: Functions) -> Relay:
    return Relay(fns.detach, older_than_s=RELAY_AFTER_S)


def test_a_failed_publish_nobody_retries_is_published_by_the_relay(world: World) -> None:
    fns = build(world)
    world.jobs.down = True
    first = fns.detach(request())
    assert first.status is DetachStatus.RETRY  # 503: the job runs, its event did not go out
    assert record_http_status(first.status) == 503
    world.jobs.down = False

    assert relay(fns).sweep() == RelayReport()  # too early: the sender may still retry
    world.clock.advance(RELAY_AFTER_S)
    assert relay(fns).sweep() == RelayReport(published=1)

    assert world.jobs.types() == ["ecs-detach.accepted"]
    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]
    assert world.deletes() == [WEB1_DATA]
    assert WEB1_DATA not in world.attached(WEB1)


def test_the_relayed_event_is_rebuilt_from_the_record_alone(world: World) -> None:
    """The request's fields reach the result through the relay as they would without it."""
    fns = build(world)
    world.jobs.down = True
    fns.detach(request(device="/dev/vdb", volume_id=None))  # resolved before the call
    world.jobs.down = False
    world.clock.advance(RELAY_AFTER_S)

    relay(fns).sweep()

    (event,) = world.jobs.events()
    data = event["data"]
    assert (data["server_id"], data["volume_id"], data["device"]) == (WEB1, WEB1_DATA, "/dev/vdb")
    assert (data["idempotency_key"], data["alert_id"], data["reason"]) == (KEY, "am-42", "disk full")
    assert (data["project_id"], data["origin"]) == (PID, {"source": "alertmanager"})
    assert data["job_id"]
    assert data["deadline"] > data["accepted_at"]


def test_an_instance_killed_before_publishing_is_relayed_before_its_claim_lapses(world: World) -> None:
    fns = build(world)
    die_at_the_publish(world)
    with pytest.raises(Killed):
        fns.detach(request())
    retried = fns.detach(request())  # the sender's retry meets the dead instance's live claim
    assert (retried.status, retried.original) == (DetachStatus.DUPLICATE, "accepted")

    world.clock.advance(RELAY_AFTER_S)
    assert RELAY_AFTER_S < CLAIM_S
    assert relay(fns).sweep() == RelayReport(published=1)

    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]
    assert world.deletes() == [WEB1_DATA]


def test_an_instance_killed_after_publishing_ends_in_one_result_though_published_twice(
    world: World,
) -> None:
    """Publishing twice is harmless: the poll function reports each job once."""
    fns = build(world)
    die_at_the_publish(world, after_it=True)
    with pytest.raises(Killed):
        fns.detach(request())
    world.clock.advance(RELAY_AFTER_S)

    assert relay(fns).sweep() == RelayReport(published=1)
    assert world.jobs.types() == ["ecs-detach.accepted", "ecs-detach.accepted"]

    steps = fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]
    assert "succeeded" in {step.what for step in steps}
    assert world.deletes() == [WEB1_DATA]


def test_a_relay_whose_topic_is_still_down_leaves_the_record_for_a_later_sweep(world: World) -> None:
    fns = build(world)
    world.jobs.down = True
    fns.detach(request())
    world.clock.advance(RELAY_AFTER_S)

    assert relay(fns).sweep() == RelayReport(failed=1)
    seen = world.store.peek(KEY)
    assert seen is not None
    assert seen.state is ClaimState.IN_PROGRESS
    assert "job_id" in seen.progress
    world.jobs.down = False
    assert relay(fns).sweep() == RelayReport()  # it waits its age again
    world.clock.advance(RELAY_AFTER_S)
    assert relay(fns).sweep() == RelayReport(published=1)
    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]


def test_a_sender_retry_after_a_failed_relay_publishes_once(world: World) -> None:
    """The relay parks the record like the owner does: the sender's next retry takes it over."""
    fns = build(world)
    world.jobs.down = True
    fns.detach(request())
    world.clock.advance(RELAY_AFTER_S)
    relay(fns).sweep()
    world.jobs.down = False

    again = fns.detach(request())

    assert again.status is DetachStatus.ACCEPTED
    world.clock.advance(RELAY_AFTER_S)
    assert relay(fns).sweep() == RelayReport()  # the key is complete: out of the outbox
    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]
    assert world.deletes() == [WEB1_DATA]


def test_published_requests_are_never_relayed(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    world.clock.advance(RELAY_AFTER_S)

    assert relay(fns).sweep() == RelayReport()
    assert world.jobs.types() == ["ecs-detach.accepted"]


def test_two_relays_publish_a_record_once(world: World) -> None:
    fns = build(world)
    world.jobs.down = True
    fns.detach(request())
    world.jobs.down = False
    world.clock.advance(RELAY_AFTER_S)

    reports = [relay(fns).sweep(), relay(fns).sweep()]

    assert reports == [RelayReport(published=1), RelayReport()]
    assert world.jobs.types() == ["ecs-detach.accepted"]


def test_a_sweep_goes_through_every_batch(world: World) -> None:
    fns = build(world)
    world.jobs.down = True
    for volume in (WEB1_DATA, WEB2_DATA):
        server = WEB1 if volume == WEB1_DATA else WEB2
        fns.detach(request(server_id=server, volume_id=volume, idempotency_key=f"k-{volume}"))
    world.jobs.down = False
    world.clock.advance(RELAY_AFTER_S)

    assert Relay(fns.detach, older_than_s=RELAY_AFTER_S, batch=1).sweep() == RelayReport(published=2)
    fns.drain(world)
    assert sorted(r["volume_id"] for r in world.results_of()) == sorted([WEB1_DATA, WEB2_DATA])


def test_a_relayed_job_frees_its_locks_when_it_ends(world: World) -> None:
    """The relayed job holds the server's locks like any accepted one, and gives them back."""
    fns = build(world)
    world.jobs.down = True
    fns.detach(request())
    world.jobs.down = False
    world.clock.advance(RELAY_AFTER_S)
    relay(fns).sweep()
    queued = fns.detach(request(volume_id=WEB1_LOGS, idempotency_key="second"))
    assert queued.status is DetachStatus.QUEUED

    fns.drain(world)

    assert sorted(r["volume_id"] for r in world.results_of()) == sorted([WEB1_DATA, WEB1_LOGS])
    assert world.deletes() == [WEB1_DATA, WEB1_LOGS]


# -- requests whose owner died before noting a job ---------------------------------------------


def die_at_the_job_note(fns: Functions) -> None:
    """The instance dies right after its detach call, before it notes the job."""
    note = fns.guard.note

    def dying(key: str, progress: dict[str, Any], **options: Any) -> None:
        if "job_id" in progress:
            fns.guard.note = note  # type: ignore[method-assign]  # only this instance dies
            raise Killed
        note(key, progress, **options)

    fns.guard.note = dying  # type: ignore[method-assign]


def test_a_quiet_sender_cut_off_before_the_job_note_gets_one_result(world: World) -> None:
    """The disk is detached, nothing records the job and the sender never asks again: once the
    claim lapses the relay runs the request again, which finds the disk gone and reports it."""
    fns = build(world)
    die_at_the_job_note(fns)
    with pytest.raises(Killed):
        fns.detach(request())
    assert world.deletes() == [WEB1_DATA]

    world.clock.advance(RELAY_AFTER_S)
    assert relay(fns).sweep() == RelayReport()  # the owner's claim holds: it may be calling ECS
    world.clock.advance(CLAIM_S - RELAY_AFTER_S)
    assert relay(fns).sweep() == RelayReport(ended=1)

    fns.drain(world)
    (result,) = world.results_of()
    assert (result["outcome"], result["idempotency_key"], result["volume_id"]) == (
        "already_detached",
        KEY,
        WEB1_DATA,
    )
    assert world.deletes() == [WEB1_DATA]  # not a second time
    seen = world.store.peek(KEY)
    assert seen is not None
    assert seen.state is ClaimState.DONE
    world.clock.advance(CLAIM_S)
    assert relay(fns).sweep() == RelayReport()  # ended: never resumed again


def test_a_resumed_request_finds_the_disk_still_detaching_and_reports_it(world: World) -> None:
    world.faults(settle_lag_s=600)  # the job succeeds; the disk stays attached and detaching
    fns = build(world)
    die_at_the_job_note(fns)
    with pytest.raises(Killed):
        fns.detach(request())
    world.clock.advance(CLAIM_S)

    assert relay(fns).sweep() == RelayReport(ended=1)

    (result,) = world.results_of()
    assert result["outcome"] == "rejected"
    assert result["error_code"] == "Ecs.0102"  # the disk status does not allow detaching
    assert world.deletes() == [WEB1_DATA]


def test_an_instance_killed_before_its_detach_call_is_resumed_by_the_relay(world: World) -> None:
    fns = build(world)
    calls = world.ecs.detach_volume

    def dying(*args: Any, **kwargs: Any) -> Any:
        world.ecs.detach_volume = calls  # type: ignore[method-assign]
        raise Killed

    world.ecs.detach_volume = dying  # type: ignore[method-assign]
    with pytest.raises(Killed):
        fns.detach(request())
    assert world.deletes() == []
    world.clock.advance(CLAIM_S)

    assert relay(fns).sweep() == RelayReport(published=1)

    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]
    assert world.deletes() == [WEB1_DATA]


def test_a_resumed_request_the_cloud_refuses_for_now_is_resumed_again_later(world: World) -> None:
    fns = build(world)
    die_at_the_job_note(fns)
    with pytest.raises(Killed):
        fns.detach(request(volume_id=WEB1_LOGS))
    world.clock.advance(CLAIM_S)
    world.faults(errors=[{"rate": 1.0, "methods": ["GET"], "status": 503, "code": "Ecs.0002"}])

    assert relay(fns).sweep() == RelayReport(failed=1)
    assert world.results_of() == []
    world.faults()
    assert relay(fns).sweep() == RelayReport()  # the relay's own claim holds
    world.clock.advance(CLAIM_S)
    assert relay(fns).sweep() == RelayReport(ended=1)
    assert [r["outcome"] for r in world.results_of()] == ["already_detached"]


def test_queued_and_answered_requests_are_not_resumed(world: World) -> None:
    """A queued request waits for its turn (its event on the jobs topic), not for the relay."""
    fns = build(world)
    assert fns.detach(request()).status is DetachStatus.ACCEPTED
    queued = fns.detach(request(volume_id=WEB1_LOGS, idempotency_key="second"))
    assert queued.status is DetachStatus.QUEUED
    world.clock.advance(CLAIM_S)

    assert relay(fns).sweep() == RelayReport()
    fns.drain(world)
    assert sorted(r["volume_id"] for r in world.results_of()) == sorted([WEB1_DATA, WEB1_LOGS])

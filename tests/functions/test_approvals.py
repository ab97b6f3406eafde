"""Approvals in the detach flow, branch by branch, on the fake clock (tests/functions/conftest.py):
what waits, what the approver is shown, and how every decision (or none) ends the request in
exactly one result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handler.core.approval import ApprovalState
from handler.core.approval_policy import ApprovalPolicy, ApprovalRules
from handler.core.models import DetachRequest
from handler.core.outcomes import DetachStatus, record_http_status
from handler.core.policy import SafetyPolicy
from handler.functions.approvals import Answer, ApprovalDesk
from handler.sources import load_mappings, parse_ticket
from handler.store import ClaimState, SqliteStore
from tests.functions.conftest import Functions, World, build
from tests.support import (
    CLUSTER1,
    DB1_SHUTOFF,
    DB1_SYSTEM,
    PID,
    SHARED,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
    WEB2,
    WEB2_DATA,
)

ALWAYS = ApprovalPolicy(mode="always")
REQUESTED = "ecs-detach.approval_requested"


def request(**fields: Any) -> DetachRequest:
    origin = {"source": "alertmanager", "receiver": "oncall-bot", "credential": "alerts"}
    return DetachRequest.model_validate(
        {"server_id": WEB1, "volume_id": WEB1_DATA, "origin": origin, **fields}
    )


def desk(fns: Functions) -> ApprovalDesk:
    assert fns.desk is not None
    return fns.desk


def ended(world: World) -> list[dict[str, Any]]:
    """The result events (not the approval requests) on the results topic."""
    return [e["data"] for e in world.results.events() if e["type"] != REQUESTED]


def pending(world: World, policy: ApprovalPolicy = ALWAYS, **fields: Any) -> tuple[Functions, str]:
    fns = build(world, approval=policy)
    outcome = fns.detach(request(**fields))
    assert outcome.status is DetachStatus.PENDING_APPROVAL, outcome.reason
    assert outcome.approval_id is not None
    return fns, outcome.approval_id


# -- never: nothing changes -------------------------------------------------------------------------


def test_the_default_policy_asks_nobody_and_reads_nothing_more(world: World) -> None:
    fns = build(world, approval=ApprovalPolicy())
    outcome = fns.detach(request())

    assert outcome.status is DetachStatus.ACCEPTED
    assert world.results.messages == []
    calls, _ = world.backend.ledger()
    assert len([c for c in calls if "cloudvolumes" in c.path]) == 1  # the safety policy's, no more


# -- waiting, with the preview ------------------------------------------------------------------------


def test_a_request_that_needs_approval_waits_with_its_preview_and_makes_no_detach(world: World) -> None:
    fns, approval_id = pending(world, reason="disk full")

    assert record_http_status(DetachStatus.PENDING_APPROVAL) == 202
    assert world.deletes() == []
    (event,) = world.results.events()
    assert event["type"] == REQUESTED
    assert event["approvalurl"] == f"https://detach.example.com/approvals/{approval_id}"
    data = event["data"]
    assert data["id"] == approval_id
    assert data["state"] == "pending"
    assert data["request"]["reason"] == "disk full"
    assert data["requested_by"] == ["alerts", "oncall-bot"]
    preview = data["preview"]
    assert (preview["server_name"], preview["server_status"], preview["device"]) == (
        "web-1",
        "ACTIVE",
        "/dev/vdb",
    )
    assert (preview["size_gb"], preview["shared"], preview["system_disk"]) == (100, False, False)
    assert "not the system disk" in preview["checks_passed"]
    assert preview["approval_rules"] == ["every detach needs an approval (mode always)"]
    assert WEB1_DATA in preview["will"]
    assert world.jobs.types() == ["ecs-detach.approval_turn"]  # its expiry, due in an hour
    assert world.jobs.messages[0][0] == world.clock() + 3600
    seen = world.store.peek(f"{PID}/{WEB1}/{WEB1_DATA}")
    assert seen is not None
    assert seen.state is ClaimState.IN_PROGRESS
    assert seen.progress["approval"] == approval_id  # beside the request, noted with its claim
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert kept.state is ApprovalState.PENDING


def test_a_duplicate_of_a_pending_request_is_told_so_and_opens_nothing(world: World) -> None:
    fns, approval_id = pending(world)
    again = fns.detach(request())

    assert (again.status, again.original, again.approval_id) == (
        DetachStatus.DUPLICATE,
        "pending_approval",
        approval_id,
    )
    assert record_http_status(again.status, again.original) == 202
    assert [e["type"] for e in world.results.events()] == [REQUESTED]


def test_a_refused_request_is_refused_before_anyone_is_asked(world: World) -> None:
    fns = build(world, approval=ALWAYS)
    outcome = fns.detach(request(volume_id=SHARED, server_id=CLUSTER1))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "PolicySharedDisk")
    assert [e["type"] for e in world.results.events()] == ["ecs-detach.rejected"]


def test_a_dry_run_asks_nobody(world: World) -> None:
    fns = build(world, approval=ALWAYS)
    outcome = fns.detach(request(dry_run=True))

    assert outcome.status is DetachStatus.DRY_RUN
    assert [e["type"] for e in world.results.events()] == ["ecs-detach.dry_run"]


# -- the rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "fields", "safety", "expected"),
    [
        (ApprovalRules(force=True), {"delete_flag": 1}, SafetyPolicy(allow_force=True), "force detach"),
        (
            ApprovalRules(shared_disk=True),
            {"server_id": CLUSTER1, "volume_id": SHARED},
            SafetyPolicy(allow_shared_disks=True),
            "shared disk",
        ),
        (
            ApprovalRules(system_disk_stopped=True),
            {"server_id": DB1_SHUTOFF, "volume_id": DB1_SYSTEM},
            SafetyPolicy(allow_system_disk_when_stopped=True),
            "system disk of a stopped server",
        ),
        (ApprovalRules(server_tags=["env=prod", "env=demo"]), {}, SafetyPolicy(), "server tag env=demo"),
        (ApprovalRules(projects=[PID]), {}, SafetyPolicy(), f"project {PID}"),
    ],
)
def test_each_rule_asks_for_an_approval_when_it_matches(
    world: World, rules: ApprovalRules, fields: dict[str, Any], safety: SafetyPolicy, expected: str
) -> None:
    fns = build(world, approval=ApprovalPolicy(mode="rules", rules=rules), policy=safety)
    outcome = fns.detach(request(**fields))

    assert outcome.status is DetachStatus.PENDING_APPROVAL
    (event,) = world.results.events()
    assert event["data"]["preview"]["approval_rules"] == [expected]
    assert world.deletes() == []


@pytest.mark.parametrize(
    "rules",
    [
        ApprovalRules(force=True),
        ApprovalRules(shared_disk=True),
        ApprovalRules(system_disk_stopped=True),
        ApprovalRules(server_tags=["env=prod"]),
        ApprovalRules(projects=["0" * 32]),
    ],
)
def test_a_rule_that_does_not_match_lets_the_detach_through(world: World, rules: ApprovalRules) -> None:
    fns = build(world, approval=ApprovalPolicy(mode="rules", rules=rules))

    assert fns.detach(request()).status is DetachStatus.ACCEPTED
    assert world.deletes() == [WEB1_DATA]


def test_more_disks_of_one_server_than_allowed_in_the_window_wait(world: World) -> None:
    rules = ApprovalRules(max_disks_per_server=1, window_s=600)
    fns = build(world, approval=ApprovalPolicy(mode="rules", rules=rules))

    assert fns.detach(request()).status is DetachStatus.ACCEPTED
    second = fns.detach(request(volume_id=WEB1_LOGS))
    other_server = fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA))

    assert second.status is DetachStatus.PENDING_APPROVAL
    assert "more than 1 disk(s) of server" in second.reason
    assert other_server.status is DetachStatus.ACCEPTED
    world.clock.advance(601)  # the window passed: the next disk of web-1 need not wait
    fns.drain(world)  # (the pending one expires meanwhile)
    assert fns.detach(request(volume_id=WEB1_LOGS, idempotency_key="later")).status is DetachStatus.ACCEPTED


def test_rules_mode_without_a_rule_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="at least one rule"):
        ApprovalPolicy(mode="rules")


# -- deciding ------------------------------------------------------------------------------------------


def test_an_approved_request_is_detached_and_ends_in_one_success(world: World) -> None:
    fns, approval_id = pending(world)
    answer = desk(fns).decide(approval_id, approve=True, by="alice", comment="go")

    assert (answer.answer, answer.http_status) == (Answer.DECIDED, 200)
    assert world.deletes() == []  # the detach is the approval turn's, on the jobs topic
    steps = fns.drain(world)

    assert world.deletes() == [WEB1_DATA]
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]
    assert steps[0].what == "accepted"
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert (kept.state, kept.decided_by, kept.comment, kept.outcome) == (
        ApprovalState.APPROVED,
        "alice",
        "go",
        "accepted",
    )
    assert WEB1_DATA not in world.attached(WEB1)


def test_a_denied_request_is_rejected_with_who_and_why(world: World) -> None:
    fns, approval_id = pending(world)
    answer = desk(fns).decide(approval_id, approve=False, by="bob", comment="wrong disk")
    fns.drain(world)

    assert answer.answer is Answer.DECIDED
    assert world.deletes() == []
    (result,) = ended(world)
    assert (result["outcome"], result["error_code"]) == ("rejected", "ApprovalDenied")
    assert result["fail_reason"] == "denied by bob: wrong disk"
    seen = world.store.peek(f"{PID}/{WEB1}/{WEB1_DATA}")
    assert seen is not None
    assert seen.record == {"outcome": "rejected", "error_code": "ApprovalDenied"}


def test_nobody_deciding_before_the_expiry_rejects_it_without_a_human(world: World) -> None:
    fns, approval_id = pending(world)
    (step,) = fns.drain(world)  # the expiry turn falls due in an hour

    assert step.what == "rejected"
    assert world.deletes() == []
    (result,) = ended(world)
    assert (result["outcome"], result["error_code"]) == ("rejected", "ApprovalExpired")
    late = desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    assert (late.answer, late.http_status) == (Answer.CONFLICT, 409)
    fns.drain(world)
    assert len(ended(world)) == 1


def test_a_decision_after_the_expiry_but_before_its_turn_is_refused_and_ends_it(world: World) -> None:
    fns, approval_id = pending(world)
    world.jobs.messages.clear()  # the expiry turn is lost
    world.clock.advance(3601)
    late = desk(fns).decide(approval_id, approve=True, by="alice", comment=None)

    assert late.answer is Answer.EXPIRED
    fns.drain(world)  # the decision sent the turn the lost one should have been
    assert [r["error_code"] for r in ended(world)] == ["ApprovalExpired"]


def test_the_sweep_ends_an_overdue_approval_whose_turn_was_lost(world: World) -> None:
    fns, _ = pending(world)
    world.jobs.messages.clear()
    assert desk(fns).sweep() == 0  # not due yet
    world.clock.advance(3601)

    assert desk(fns).sweep() == 1
    fns.drain(world)
    assert [r["error_code"] for r in ended(world)] == ["ApprovalExpired"]


def test_an_early_turn_changes_nothing_and_comes_back_at_the_expiry(world: World) -> None:
    fns, approval_id = pending(world)
    world.jobs.publish(world.jobs.messages[0][1])  # a redelivery, due now
    step = fns.step(world)

    assert step is not None
    assert step.what == "waiting"
    assert step.delay_s == pytest.approx(3600)
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert kept.state is ApprovalState.PENDING
    assert ended(world) == []


@pytest.mark.parametrize("where", ["a function without a desk", "a desk that never asked"])
def test_a_turn_for_an_approval_nobody_here_knows_is_stale_and_touches_nothing(
    world: World, where: str
) -> None:
    """An approval turn delivered where no desk knows its approval (a function built without
    one, or one whose book never asked: another deployment's event): stale, no claim taken,
    nothing detached, no result; the request still waits for its own approval."""
    fns, approval_id = pending(world)
    turn = json.loads(world.jobs.messages[0][1])
    if where == "a desk that never asked":
        other = "f" * 32
        assert other != approval_id
        turn["data"]["approval_id"] = other
        elsewhere = fns
    else:
        elsewhere = build(world)  # the default policy: no desk
        assert elsewhere.desk is None
    step = elsewhere.jobs(json.dumps(turn))

    assert step.what == "stale"
    assert step.again is None
    assert world.deletes() == []
    assert ended(world) == []
    claim = world.store.peek(turn["data"]["idempotency_key"])
    assert claim is not None
    assert claim.progress.get("approval") == approval_id  # still waiting, as it was
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert kept.state is ApprovalState.PENDING


def test_whoever_asked_may_not_approve_but_may_withdraw(world: World) -> None:
    fns, approval_id = pending(world)
    for asker in ("alerts", "ONCALL-BOT ", "Alerts"):
        refused = desk(fns).decide(approval_id, approve=True, by=asker, comment=None)
        assert (refused.answer, refused.http_status) == (Answer.SELF_APPROVAL, 403)
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert kept.state is ApprovalState.PENDING
    assert world.jobs.types() == ["ecs-detach.approval_turn"]  # nothing sent for the refusals

    withdrawn = desk(fns).decide(approval_id, approve=False, by="alerts", comment="false alarm")
    assert withdrawn.answer is Answer.DECIDED


def test_a_double_click_is_one_decision(world: World) -> None:
    fns, approval_id = pending(world)
    first = desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    second = desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    other = desk(fns).decide(approval_id, approve=False, by="bob", comment="no")

    assert (first.answer, second.answer, other.answer) == (Answer.DECIDED, Answer.ALREADY, Answer.CONFLICT)
    assert (second.http_status, other.http_status) == (200, 409)
    fns.drain(world)
    assert world.deletes() == [WEB1_DATA]
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert kept.decided_by == "alice"


def test_an_unknown_approval_and_an_anonymous_decision_are_refused(world: World) -> None:
    fns, approval_id = pending(world)

    assert desk(fns).decide("f" * 32, approve=True, by="alice", comment=None).http_status == 404
    assert desk(fns).decide(approval_id, approve=True, by=" ", comment=None).answer is Answer.NO_IDENTITY


# -- after the approval: the disk and the policy are checked again -------------------------------------


def test_an_approval_after_someone_else_detached_the_disk_reports_already_detached(world: World) -> None:
    fns, approval_id = pending(world)
    world.backend.detach_volume(PID, WEB1, WEB1_DATA)
    world.clock.advance(10)
    desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    fns.drain(world)

    assert world.deletes() == []
    assert [r["outcome"] for r in ended(world)] == ["already_detached"]


def test_an_approved_request_behind_a_running_detach_queues_then_detaches(world: World) -> None:
    rules = ApprovalPolicy(mode="rules", rules=ApprovalRules(force=True))
    fns = build(world, approval=rules, policy=SafetyPolicy(allow_force=True))
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.ACCEPTED  # no force: no approval
    waiting = fns.detach(request(delete_flag=1))
    assert waiting.approval_id is not None
    desk(fns).decide(waiting.approval_id, approve=True, by="alice", comment=None)

    turn = fns.step(world)  # the approval's turn is due at once, the first job's poll later

    assert turn is not None
    assert turn.what == "queued"
    assert world.deletes() == [WEB1_LOGS]
    expiry = next(body for _, body in world.jobs.messages if "ecs-detach.approval_turn" in body)
    world.jobs.publish(expiry)  # its expiry turn, redelivered now, comes while it is queued
    early = fns.step(world)
    assert early is not None
    assert early.what == "stale"  # the queued turn goes on; no second queued event
    assert world.jobs.types().count("ecs-detach.queued") == 1
    fns.drain(world)
    assert world.deletes() == [WEB1_LOGS, WEB1_DATA]
    assert sorted(r["outcome"] for r in ended(world)) == ["succeeded", "succeeded"]


def test_an_approved_request_the_policy_now_refuses_is_rejected(world: World) -> None:
    fns, approval_id = pending(world)
    world.backend.detach_volume(PID, WEB1, WEB1_DATA)  # taken off by hand…
    world.clock.advance(10)
    world.backend.attach_volume(PID, WEB2, WEB1_DATA, "/dev/vdd")  # …and put on another server
    world.clock.advance(10)
    desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    fns.drain(world)

    assert world.deletes() == []
    assert [(r["outcome"], r["error_code"]) for r in ended(world)] == [("rejected", "VolumeNotAttached")]


# -- durability ------------------------------------------------------------------------------------------


def test_a_pending_approval_survives_a_restart(world: World, tmp_path: Any) -> None:
    path = tmp_path / "store.db"
    world.store.close()
    world.store = SqliteStore(path, clock=world.clock)
    _, approval_id = pending(world)
    world.store.close()

    world.store = SqliteStore(path, clock=world.clock)  # a new process on the same file
    again = build(world, approval=ALWAYS)
    assert desk(again).decide(approval_id, approve=True, by="alice", comment=None).answer is Answer.DECIDED
    again.drain(world)
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]


def test_a_jobs_topic_down_when_asking_frees_the_key_and_asks_nobody(world: World) -> None:
    fns = build(world, approval=ALWAYS)
    world.jobs.down = True
    outcome = fns.detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert world.store.peek(f"{PID}/{WEB1}/{WEB1_DATA}") is None
    assert world.results.events() == []
    world.jobs.down = False
    assert fns.detach(request()).status is DetachStatus.PENDING_APPROVAL


def test_a_request_by_device_is_approved_queued_and_detached(world: World) -> None:
    rules = ApprovalPolicy(mode="rules", rules=ApprovalRules(force=True))
    fns = build(world, approval=rules, policy=SafetyPolicy(allow_force=True))
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.ACCEPTED  # holds the server
    by_device = fns.detach(DetachRequest(server_id=WEB1, device="vdb", delete_flag=1))
    assert by_device.approval_id is not None
    desk(fns).decide(by_device.approval_id, approve=True, by="alice", comment=None)

    steps = fns.drain(world)

    assert "queued" in [s.what for s in steps]
    assert world.deletes() == [WEB1_LOGS, WEB1_DATA]
    assert sorted(r["outcome"] for r in ended(world)) == ["succeeded", "succeeded"]


def test_a_request_by_device_queued_behind_another_is_detached_on_its_turn(world: World) -> None:
    fns = build(world)
    fns.detach(DetachRequest(server_id=WEB1, volume_id=WEB1_LOGS))
    queued = fns.detach(DetachRequest(server_id=WEB1, device="vdb"))

    steps = fns.drain(world)

    assert queued.status is DetachStatus.QUEUED
    assert "duplicate" not in [s.what for s in steps]
    assert world.deletes() == [WEB1_LOGS, WEB1_DATA]


def test_the_tickets_reporter_may_not_approve_it(world: World) -> None:
    ticket = json.loads((Path(__file__).resolve().parents[2] / "events" / "ticket-jira.json").read_text())
    ticket["issue"]["fields"]["reporter"] = {"accountId": "acc-reporter", "displayName": "Rita"}
    (record,) = parse_ticket(ticket, load_mappings(None)["jira"]).records
    assert record.request is not None
    fns = build(world, approval=ALWAYS)
    outcome = fns.detach(record.request)
    assert outcome.approval_id is not None

    refused = desk(fns).decide(outcome.approval_id, approve=True, by="acc-reporter", comment=None)

    assert refused.answer is Answer.SELF_APPROVAL
    assert "acc-reporter" in (refused.approval.requested_by if refused.approval else [])

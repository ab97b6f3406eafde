"""Approvals at their edges, on the fake clock (tests/functions/conftest.py): a turn that finds
its request's key waiting for something else, a turn that cannot go on now, the EVS read before
asking, and exactly what the approver is shown. Each test states what a person would notice:
the answer, the result events, what is detached, what the key and the approval say after."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handler.core.approval import ApprovalState
from handler.core.approval_policy import ApprovalPolicy, ApprovalRules
from handler.core.outcomes import DetachStatus
from handler.core.policy import SafetyPolicy
from handler.functions.approvals import Answer
from handler.topics import TopicError
from tests.functions.conftest import CREDENTIALS, Functions, World, build
from tests.functions.test_approvals import ALWAYS, REQUESTED, desk, ended, pending, request
from tests.functions.test_detach_function import error_rule
from tests.support import (
    CLUSTER1,
    CLUSTER2,
    DB1_SHUTOFF,
    DB1_SYSTEM,
    PID,
    SHARED,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
    WEB2,
)

KEY = f"{PID}/{WEB1}/{WEB1_DATA}"
TURN = "ecs-detach.approval_turn"
OTHER_PROJECT = "f" * 32
FORCE = ApprovalPolicy(mode="rules", rules=ApprovalRules(force=True))  # a plain detach asks nobody


def turns(world: World) -> list[str]:
    """The approval ids of the approval turns waiting on the jobs topic, earliest due first."""
    due = sorted((item for item in world.jobs.messages if f'"{TURN}"' in item[1]), key=lambda item: item[0])
    return [json.loads(body)["data"]["approval_id"] for _, body in due]


def decision_turn(world: World) -> str:
    """Take the turn a decision just published (due now) off the jobs topic."""
    due, body = world.jobs.messages.pop()
    assert (json.loads(body)["type"], due) == (TURN, world.clock())
    return body


def asked_unannounced(world: World, fns: Functions, **fields: Any) -> str:
    """A request whose approval was opened (kept, its expiry turn on the jobs topic) but whose
    ``approval_requested`` event the results topic refused: the sender is told to retry and
    its key is free. The id of that approval."""
    world.results.down = True
    outcome = fns.detach(request(**fields))
    world.results.down = False
    assert (outcome.status, outcome.retry_after_s) == (DetachStatus.RETRY, 5.0), outcome.reason
    assert outcome.reason.startswith("a topic did not take the approval")
    (approval,) = desk(fns).recent()
    assert approval.state is ApprovalState.PENDING
    return approval.id


# -- a decision on an approval its request's retry replaced (ApprovalDesk.decide) ------------------


def test_an_approval_its_retry_replaced_cannot_be_decided_and_names_the_one_that_counts(
    world: World,
) -> None:
    """Deciding the first of two approvals of one request would change nothing (its turn finds
    the request waiting for the second): the approver is told so, with the second's id, and the
    first ends superseded; the second is decided as usual."""
    fns = build(world, approval=ALWAYS)
    first = asked_unannounced(world, fns)
    retried = fns.detach(request())
    second = retried.approval_id
    assert second is not None

    late = desk(fns).decide(first, approve=True, by="alice", comment=None)

    assert (late.answer, late.http_status) == (Answer.CONFLICT, 409)
    assert late.detail == f"approval {first} was replaced by approval {second} (its request came again)"
    replaced = desk(fns).get(first)
    assert replaced is not None
    assert (replaced.state, replaced.outcome) == (ApprovalState.SUPERSEDED, None)
    assert desk(fns).decide(second, approve=True, by="alice", comment=None).answer is Answer.DECIDED
    fns.drain(world)
    assert world.deletes() == [WEB1_DATA]
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]


# -- a turn whose key waits for something else (DetachFunction._hand_back) --------------------------


def test_a_turn_for_an_approval_its_retry_replaced_leaves_the_retry_waiting(world: World) -> None:
    """The sender's retry opened a second approval for the same request: the first one's turn
    ends that first approval (superseded, no result) and leaves the key parked for the second,
    whose decision then detaches at once."""
    fns = build(world, approval=ALWAYS)
    first = asked_unannounced(world, fns)
    world.clock.advance(10)
    retried = fns.detach(request())
    assert retried.status is DetachStatus.PENDING_APPROVAL
    second = retried.approval_id
    assert second is not None
    assert turns(world) == [first, second]  # the first one's expiry falls due first

    stale = fns.step(world)

    assert stale is not None
    assert (stale.what, stale.again) == ("stale", None)
    assert world.deletes() == []
    assert ended(world) == []
    superseded = desk(fns).get(first)
    assert superseded is not None
    assert (superseded.state, superseded.outcome) == (ApprovalState.SUPERSEDED, None)
    late = desk(fns).decide(first, approve=True, by="alice", comment=None)
    assert (late.answer, late.http_status) == (Answer.CONFLICT, 409)
    kept = world.store.peek(KEY)
    assert kept is not None
    assert (kept.progress["approval"], kept.expires_in_s) == (second, 0.0)  # parked, as it was
    again = fns.detach(request())  # the sender asks once more: still the second approval
    assert (again.status, again.original, again.approval_id) == (
        DetachStatus.DUPLICATE,
        "pending_approval",
        second,
    )

    desk(fns).decide(second, approve=True, by="alice", comment=None)
    decided = fns.step(world)

    assert decided is not None
    assert decided.what == "accepted"  # at once: nobody holds the key
    assert world.deletes() == [WEB1_DATA]
    fns.drain(world)
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]
    assert [a.id for a in desk(fns).recent() if a.state is ApprovalState.PENDING] == []


def test_a_turn_for_an_approval_whose_request_was_never_kept_frees_the_key(world: World) -> None:
    """The sender never retried: the approval's expiry turn finds the key free, ends the
    approval (superseded, no result: the sender was told to retry) and leaves nothing in the
    store, so the retry that finally comes is asked for at once."""
    fns = build(world, approval=ALWAYS)
    first = asked_unannounced(world, fns)

    stale = fns.step(world)  # its expiry turn, an hour later

    assert stale is not None
    assert (stale.what, stale.again) == ("stale", None)
    assert world.store.peek(KEY) is None  # nothing kept for a request nobody waits for
    assert world.jobs.messages == []
    assert world.results.events() == []
    superseded = desk(fns).get(first)
    assert superseded is not None
    assert superseded.state is ApprovalState.SUPERSEDED

    late = fns.detach(request())

    assert late.status is DetachStatus.PENDING_APPROVAL, late.reason  # not "being handled"
    assert late.approval_id not in (None, first)
    assert [e["type"] for e in world.results.events()] == [REQUESTED]


def test_a_turn_whose_key_now_names_another_request_leaves_that_request_alone(world: World) -> None:
    """The key was reused by a request for another disk while the first approval's turn was
    on its way: the turn ends its own approval and leaves the other request's record be."""
    fns = build(world, approval=ALWAYS)
    first = asked_unannounced(world, fns, idempotency_key="k")
    world.clock.advance(10)
    other = fns.detach(request(idempotency_key="k", volume_id=WEB1_LOGS))
    assert other.status is DetachStatus.PENDING_APPROVAL
    assert other.approval_id is not None

    stale = fns.step(world)

    assert stale is not None
    assert stale.what == "stale"
    superseded = desk(fns).get(first)
    assert superseded is not None
    assert superseded.state is ApprovalState.SUPERSEDED
    kept = world.store.peek("k")
    assert kept is not None
    assert kept.progress["approval"] == other.approval_id
    desk(fns).decide(other.approval_id, approve=True, by="alice", comment=None)
    fns.drain(world)
    assert world.deletes() == [WEB1_LOGS]
    assert [(r["volume_id"], r["outcome"]) for r in ended(world)] == [(WEB1_LOGS, "succeeded")]


# -- a turn that cannot go on now ------------------------------------------------------------------


def test_a_decided_turn_meeting_a_retry_that_holds_the_key_comes_back(world: World) -> None:
    fns, approval_id = pending(world)
    desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    fns.guard.claim(KEY, request(project_id=PID), PID)  # a sender's retry holds the key right now

    step = fns.step(world)

    assert step is not None
    assert (step.what, step.delay_s) == ("waiting", 60.0)  # when that claim lapses
    assert step.again is not None  # neither dropped nor made now
    assert world.deletes() == []
    fns.drain(world)
    assert world.deletes() == [WEB1_DATA]
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]


def test_an_early_turn_leaves_the_key_to_the_decision_that_follows(world: World) -> None:
    fns, approval_id = pending(world)
    world.jobs.publish(world.jobs.messages[0][1])  # its expiry turn, redelivered now
    early = fns.step(world)
    assert early is not None
    assert early.what == "waiting"

    desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    decided = fns.step(world)

    assert decided is not None
    assert decided.what == "accepted"  # not held up by the early turn's look
    assert world.deletes() == [WEB1_DATA]


def test_an_early_turn_of_an_approved_queued_request_does_not_hold_up_its_queue(world: World) -> None:
    fns = build(world, approval=FORCE, policy=SafetyPolicy(allow_force=True))
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.ACCEPTED  # holds web-1
    waiting = fns.detach(request(delete_flag=1))
    assert waiting.approval_id is not None
    desk(fns).decide(waiting.approval_id, approve=True, by="alice", comment=None)
    queued = fns.step(world)
    assert queued is not None
    assert queued.what == "queued"
    due = world.clock() + 5.0  # queue_check_s
    expiry = next(body for _, body in world.jobs.messages if f'"{TURN}"' in body)
    world.jobs.publish(expiry)  # redelivered now, while the request is queued
    early = fns.step(world)
    assert early is not None
    assert early.what == "stale"
    while world.jobs.next_type() != "ecs-detach.queued":  # the running detach ends meanwhile
        fns.step(world)

    turn = fns.step(world)

    assert turn is not None
    assert (turn.what, world.clock()) == ("accepted", due)  # on time: the stale turn kept no claim
    assert world.deletes() == [WEB1_LOGS, WEB1_DATA]
    fns.drain(world)
    assert sorted(r["outcome"] for r in ended(world)) == ["succeeded", "succeeded"]


def test_an_approved_turn_the_cloud_is_busy_for_queues_without_holding_the_server(world: World) -> None:
    fns = build(world, approval=FORCE, policy=SafetyPolicy(allow_force=True))
    waiting = fns.detach(request(delete_flag=1))
    approval_id = waiting.approval_id
    assert approval_id is not None
    desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    world.faults(**error_rule(409, "Ecs.0603", message="other commands are running"))

    step = fns.step(world)

    assert step is not None
    assert step.what == "queued"
    assert world.jobs.types().count("ecs-detach.queued") == 1
    assert world.store.holder(f"server:{PID}:{WEB1}") is None
    assert world.store.holder(f"volume:{PID}:{WEB1_DATA}") is None
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert (kept.state, kept.outcome) == (ApprovalState.APPROVED, "queued")
    world.faults()
    other = fns.detach(request(volume_id=WEB1_LOGS))  # another disk of web-1 meanwhile
    assert other.status is DetachStatus.ACCEPTED, other.reason  # not queued behind the waiting one
    fns.drain(world)
    assert sorted(world.deletes()) == sorted([WEB1_LOGS, WEB1_DATA])
    assert sorted(r["outcome"] for r in ended(world)) == ["succeeded", "succeeded"]


def test_an_approved_detach_counts_its_disk_in_the_servers_window(world: World) -> None:
    # Every request asks; the window counts up to two disks a server (its slots).
    rules = ApprovalRules(max_disks_per_server=2, window_s=600)
    fns = build(world, approval=ApprovalPolicy(mode="always", rules=rules))
    waiting = fns.detach(request())
    assert waiting.approval_id is not None
    assert desk(fns).recent_disks(PID, WEB1, "anyone") == 0  # asking counts nothing
    desk(fns).decide(waiting.approval_id, approve=True, by="alice", comment=None)

    step = fns.step(world)

    assert step is not None
    assert step.what == "accepted"
    # The disk now counts against web-1's window (the next request of the server sees it), under
    # this request's key (it never counts against itself), and against no other server.
    assert desk(fns).recent_disks(PID, WEB1, "anyone") == 1
    assert desk(fns).recent_disks(PID, WEB1, KEY) == 0
    assert desk(fns).recent_disks(PID, WEB2, "anyone") == 0


def test_an_approved_turn_that_cannot_even_queue_fails_and_loses_nothing(world: World) -> None:
    fns, approval_id = pending(world)
    desk(fns).decide(approval_id, approve=True, by="alice", comment=None)
    world.faults(**error_rule(409, "Ecs.0603", message="other commands are running"))
    world.jobs.down = True
    turn = decision_turn(world)

    with pytest.raises(TopicError, match=approval_id):  # the consumer gets the turn again
        fns.jobs(turn)

    assert ended(world) == []
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert (kept.state, kept.outcome) == (ApprovalState.APPROVED, None)
    assert world.store.holder(f"server:{PID}:{WEB1}") is None
    world.jobs.down = False
    world.faults()
    again = fns.jobs(turn)  # redelivered at once
    assert again.what == "accepted"  # the failed turn left the key parked, not held
    fns.drain(world)
    assert world.deletes() == [WEB1_DATA]
    assert [r["outcome"] for r in ended(world)] == ["succeeded"]


def test_a_retried_request_does_not_count_its_own_disk_against_the_window(world: World) -> None:
    rules = ApprovalRules(max_disks_per_server=1, window_s=600)
    fns = build(world, approval=ApprovalPolicy(mode="rules", rules=rules))
    world.faults(**error_rule(409, "Ecs.0603", message="other commands are running"))
    assert fns.detach(request()).status is DetachStatus.RETRY  # it went ahead, the cloud was busy
    world.faults()

    again = fns.detach(request())

    assert again.status is DetachStatus.ACCEPTED, again.reason
    assert world.results.events() == []  # nobody was asked
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.PENDING_APPROVAL


# -- how a decision ends the request (DetachFunction._decided) ---------------------------------------


def test_a_denial_without_a_comment_says_who_and_nothing_more(world: World) -> None:
    fns, approval_id = pending(world)
    desk(fns).decide(approval_id, approve=False, by="bob", comment=None)
    (step,) = [s for s in fns.drain(world) if s.what != "stale"]

    assert step.what == "rejected"
    (result,) = ended(world)
    assert (result["error_code"], result["fail_reason"]) == ("ApprovalDenied", "denied by bob")
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert (kept.state, kept.outcome) == (ApprovalState.DENIED, "rejected")
    assert world.deletes() == []


def test_an_expired_request_says_until_when_and_who_ended_it(world: World) -> None:
    fns, approval_id = pending(world)
    (step,) = fns.drain(world)

    assert step.what == "rejected"
    (result,) = ended(world)
    assert (result["outcome"], result["error_code"]) == ("rejected", "ApprovalExpired")
    assert result["fail_reason"] == "no decision before 2024-01-15T09:30:00+00:00"
    kept = desk(fns).get(approval_id)
    assert kept is not None
    assert (kept.state, kept.decided_by, kept.comment, kept.outcome) == (
        ApprovalState.EXPIRED,
        "ecs-detach",
        "no decision within 3600 s",
        "rejected",
    )
    record = world.store.peek(KEY)
    assert record is not None
    assert record.record == {"outcome": "rejected", "error_code": "ApprovalExpired"}


def expiry_turn(world: World) -> str:
    """Take the one approval turn off the jobs topic, the clock moved to when it is due."""
    (item,) = [item for item in world.jobs.messages if f'"{TURN}"' in item[1]]
    world.jobs.messages.remove(item)
    world.clock.advance(item[0] - world.clock())
    return item[1]


@pytest.mark.parametrize(("ending", "code"), [("denied", "ApprovalDenied"), ("expired", "ApprovalExpired")])
def test_a_refusal_the_results_topic_refuses_is_published_later_and_detaches_nothing(
    world: World, ending: str, code: str
) -> None:
    # Rules mode: by the time the turn comes back, the window has passed and no rule matches
    # any more, so a request that went on would detach the disk nobody approved.
    rules = ApprovalRules(max_disks_per_server=1, window_s=10)
    fns = build(world, approval=ApprovalPolicy(mode="rules", rules=rules))
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.ACCEPTED
    waiting = fns.detach(request())
    assert waiting.approval_id is not None
    if ending == "denied":
        world.clock.advance(8)
        desk(fns).decide(waiting.approval_id, approve=False, by="bob", comment="keep it")
        turn = decision_turn(world)
    else:
        turn = expiry_turn(world)
    world.results.down = True
    try:
        step = fns.jobs(turn)
    except TopicError:
        world.jobs.publish(turn)  # the consumer gets it again
    else:
        if step.again is not None:
            world.jobs.publish(step.again, delay=step.delay_s)
    world.results.down = False
    fns.drain(world)

    assert world.deletes() == [WEB1_LOGS]
    assert [(r["volume_id"], r["error_code"]) for r in ended(world) if r["volume_id"] == WEB1_DATA] == [
        (WEB1_DATA, code)
    ]
    assert len(desk(fns).recent()) == 1


# -- the EVS read before asking (DetachFunction._approval_gate) ---------------------------------------


def test_the_disk_is_read_in_the_requests_project_before_asking(world: World) -> None:
    world.sign_with(CREDENTIALS.model_copy(update={"project_id": None}))  # no default to fall back on
    # The deployment's default is another project; shared disks allowed: the safety policy
    # reads no EVS, so the one EVS read is the one before asking.
    safety = SafetyPolicy(allow_shared_disks=True)
    fns = build(world, project=OTHER_PROJECT, approval=ALWAYS, policy=safety)

    outcome = fns.detach(request(project_id=PID))

    assert outcome.status is DetachStatus.PENDING_APPROVAL, outcome.reason
    (event,) = world.results.events()
    assert event["data"]["request"]["project_id"] == PID
    assert event["data"]["preview"]["size_gb"] == 100  # what EVS says of the disk in that project
    evs = [r.url.path for r in world.transport.sent if "/cloudvolumes/" in r.url.path]
    assert evs == [f"/v2/{PID}/cloudvolumes/{WEB1_DATA}"]
    assert {r.url.path.split("/")[2] for r in world.transport.sent} == {PID}


@pytest.mark.parametrize(
    ("failure", "delay", "says"),
    [
        ("an error", 5.0, "EVS.5000: down"),
        ("our credentials refused", 30.0, "IAM.0002: forbidden"),
        ("no answer", 5.0, "no answer from EVS"),
    ],
)
def test_evs_failing_before_asking_is_retried_and_keeps_nothing(
    world: World, failure: str, delay: float, says: str
) -> None:
    # Shared disks allowed: the safety policy reads no EVS, so the read before asking is the first.
    fns = build(world, approval=ALWAYS, policy=SafetyPolicy(allow_shared_disks=True))
    if failure == "an error":
        world.faults(**error_rule(500, "EVS.5000", methods=("GET",), paths="cloudvolumes", message="down"))
    elif failure == "our credentials refused":
        world.faults(
            **error_rule(403, "IAM.0002", methods=("GET",), paths="cloudvolumes", message="forbidden")
        )
    else:
        world.transport.fail = lambda r: "/cloudvolumes/" in r.url.path

    outcome = fns.detach(request())

    assert (outcome.status, outcome.retry_after_s) == (DetachStatus.RETRY, delay)
    assert says in outcome.reason
    assert world.deletes() == []
    assert desk(fns).recent() == []  # nobody is asked
    assert (world.jobs.messages, world.results.messages) == ([], [])
    assert world.store.peek(KEY) is None  # the key is free for the retry
    assert world.store.holder(f"server:{PID}:{WEB1}") is None
    assert world.store.holder(f"volume:{PID}:{WEB1_DATA}") is None
    assert fns.blast.used(PID) == 0
    world.faults()
    world.transport.fail = lambda _r: False
    assert fns.detach(request()).status is DetachStatus.PENDING_APPROVAL


# -- what the approver is shown (DetachFunction._ask_approval) ----------------------------------------


def _will(volume_id: str, device: str, server_id: str, force: str = "") -> str:
    return (
        f"volume {volume_id} at {device} is detached{force} from server {server_id}"
        f" in project {PID}, after the policy and the disk are checked again"
    )


@pytest.mark.parametrize(
    ("fields", "safety", "rules", "preview"),
    [
        pytest.param(
            {},
            SafetyPolicy(),
            ApprovalRules(projects=[PID]),
            {
                "server_name": "web-1",
                "server_status": "ACTIVE",
                "device": "/dev/vdb",
                "size_gb": 100,
                "volume_type": "SSD",
                "shared": False,
                "system_disk": False,
                "checks_passed": [
                    "not the system disk",
                    "not shared with another server",
                    f"attached to server {WEB1}",
                ],
                "approval_rules": [f"project {PID}"],
                "will": _will(WEB1_DATA, "/dev/vdb", WEB1),
            },
            id="a data disk",
        ),
        pytest.param(
            {"device": "vdb", "volume_id": None, "delete_flag": 1},
            SafetyPolicy(
                allow_force=True,
                allowed_projects=[PID],
                allowed_servers=[WEB1],
                required_tag="auto-remediation=true",
            ),
            ApprovalRules(force=True),
            {
                "server_name": "web-1",
                "server_status": "ACTIVE",
                "device": "/dev/vdb",
                "size_gb": 100,
                "volume_type": "SSD",
                "shared": False,
                "system_disk": False,
                "checks_passed": [
                    f"project {PID} is allowed",
                    f"server {WEB1} is allowed",
                    "server carries the required tag auto-remediation=true",
                    "not the system disk",
                    "not shared with another server",
                    "force detach, allowed by the policy",
                    f"attached to server {WEB1}",
                ],
                "approval_rules": ["force detach"],
                "will": _will(WEB1_DATA, "/dev/vdb", WEB1, " by force (delete_flag=1)"),
            },
            id="by device, by force, every scope rule",
        ),
        pytest.param(
            {"server_id": DB1_SHUTOFF, "volume_id": DB1_SYSTEM},
            SafetyPolicy(allow_system_disk_when_stopped=True),
            ApprovalRules(system_disk_stopped=True),
            {
                "server_name": "db-1",
                "server_status": "SHUTOFF",
                "device": "/dev/vda",
                "size_gb": 40,
                "volume_type": "SSD",
                "shared": False,
                "system_disk": True,
                "checks_passed": [
                    "system disk of a stopped server, allowed by the policy",
                    "not shared with another server",
                    f"attached to server {DB1_SHUTOFF}",
                ],
                "approval_rules": ["system disk of a stopped server"],
                "will": _will(DB1_SYSTEM, "/dev/vda", DB1_SHUTOFF),
            },
            id="the system disk of a stopped server",
        ),
        pytest.param(
            {"server_id": CLUSTER1, "volume_id": SHARED},
            SafetyPolicy(allow_shared_disks=True),
            ApprovalRules(shared_disk=True),
            {
                "server_name": "cluster-1",
                "server_status": "ACTIVE",
                "device": "/dev/sda",
                "size_gb": 300,
                "volume_type": "SSD",
                "shared": True,
                "system_disk": False,
                "checks_passed": [
                    "not the system disk",
                    "shared disk, allowed by the policy",
                    f"attached to server {CLUSTER1}",
                ],
                "approval_rules": ["shared disk"],
                "will": _will(SHARED, "/dev/sda", CLUSTER1),
            },
            id="a multi-attach disk left on one server",
        ),
    ],
)
def test_the_approver_sees_what_the_cloud_said_field_by_field(
    world: World,
    fields: dict[str, Any],
    safety: SafetyPolicy,
    rules: ApprovalRules,
    preview: dict[str, Any],
) -> None:
    if fields.get("volume_id") == SHARED:
        world.backend.detach_volume(PID, CLUSTER2, SHARED)
        world.clock.advance(10)  # only cluster-1 holds it now: shared because it is multi-attach
    fns = build(world, approval=ApprovalPolicy(mode="rules", rules=rules), policy=safety)

    outcome = fns.detach(request(**fields))

    assert outcome.status is DetachStatus.PENDING_APPROVAL, outcome.reason
    assert outcome.approval_id is not None
    (event,) = world.results.events()
    assert event["data"]["preview"] == preview
    kept = desk(fns).get(outcome.approval_id)
    assert kept is not None
    assert kept.preview.model_dump(mode="json") == preview

"""One request, many records: each handled on its own, within one budget of cloud calls."""

from __future__ import annotations

from handler.core.models import DetachRequest
from handler.core.outcomes import DetachStatus as S
from handler.functions.batch import process
from handler.sources._base import Parsed, Record
from tests.functions.conftest import World, build
from tests.support import DB1_DATA, DB1_SHUTOFF, WEB1, WEB1_DATA, WEB2, WEB2_DATA


def parsed(*disks: tuple[str, str]) -> Parsed:
    records = [
        Record.ok(f"$[{i}]", DetachRequest(server_id=server, volume_id=volume))
        for i, (server, volume) in enumerate(disks)
    ]
    return Parsed("test", records)


def calls(world: World) -> int:
    return len(world.backend.ledger()[0])


def test_records_past_the_budget_are_retried_and_send_nothing(world: World) -> None:
    fns = build(world)
    request = parsed((WEB1, WEB1_DATA), (WEB2, WEB2_DATA), (DB1_SHUTOFF, DB1_DATA))

    first = process(request, fns.detach, max_cloud_calls=4)  # server + EVS + DELETE per record

    assert [r.status for r in first.records] == [
        S.ACCEPTED,
        S.RETRY,
        S.RETRY,
    ]
    assert calls(world) == 4  # the second record's server read, then nothing more was sent
    assert first.http_status() == 503
    assert "budget of cloud calls" in (first.records[2].detail or "")
    assert world.slept == []  # a spent budget is not retried inside the call

    again = process(request, fns.detach, max_cloud_calls=4)  # the sender's retry: a fresh budget
    assert [r.status for r in again.records] == [
        S.DUPLICATE,
        S.ACCEPTED,
        S.RETRY,
    ]
    third = process(request, fns.detach, max_cloud_calls=4)
    assert [r.status for r in third.records][2] is S.ACCEPTED
    assert world.deletes() == [WEB1_DATA, WEB2_DATA, DB1_DATA]


def test_a_budget_large_enough_changes_nothing(world: World) -> None:
    fns = build(world)
    report = process(parsed((WEB1, WEB1_DATA), (WEB2, WEB2_DATA)), fns.detach, max_cloud_calls=400)

    assert [r.status for r in report.records] == [S.ACCEPTED, S.ACCEPTED]
    assert report.http_status() == 202

"""What the source tests share: the sample events, outcome tuples, and JSON strategies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from handler.core.models import DetachRequest
from handler.core.validation import InvalidInput
from handler.sources import Parsed
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2, WEB2_DATA

EVENTS = Path(__file__).resolve().parents[2] / "events"
NOT_A_UUID = "must be a UUID (8-4-4-4-12 hex digits)"
NOT_A_DEVICE = "must be a device name like vdb or /dev/vdb"

# Modest on purpose: tests/sources must stay fast.
PROPERTY = settings(max_examples=200, deadline=None)

Outcome = tuple[str, "DetachRequest | None", "list[tuple[str, str]] | None", "str | None"]


def event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def event_bytes(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def ok(ref: str, **fields: Any) -> Outcome:
    return (ref, DetachRequest.model_validate(fields), None, None)


def bad(ref: str, *errors: tuple[str, str]) -> Outcome:
    return (ref, None, list(errors), None)


def skip(ref: str, reason: str) -> Outcome:
    return (ref, None, None, reason)


def outcomes(parsed: Parsed) -> list[Outcome]:
    """Each record as (ref, request, [(field, reason)], ignored), after checking it is well formed."""
    assert_well_formed(parsed)
    return [
        (r.ref, r.request, [(e.field, e.reason) for e in r.error.errors] if r.error else None, r.ignored)
        for r in parsed.records
    ]


def assert_well_formed(parsed: Parsed) -> None:
    assert isinstance(parsed, Parsed)
    for record in parsed.records:
        assert [record.request, record.error, record.ignored].count(None) == 2, record
        assert record.ref
        if record.error is not None:
            assert record.error.errors, record.error
            assert all(e.field and e.reason for e in record.error.errors)
        if record.ignored is not None:
            assert record.ignored.strip()


def only_invalid_input(call: Any, *args: Any) -> None:
    """``call(*args)`` returns well-formed Records or raises ``InvalidInput`` naming fields."""
    try:
        parsed = call(*args)
    except InvalidInput as error:
        assert_names_fields(error)
    else:
        assert_well_formed(parsed)


def assert_names_fields(error: InvalidInput) -> None:
    assert error.errors
    assert all(e.field and e.reason for e in error.errors)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
# Cheap wrong values for the leaves of shaped strategies (which keep their envelopes valid, so
# that the examples reach the records; arbitrary JSON covers broken envelopes).
junk = scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.text(max_size=5), scalars, max_size=2)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
header_maps = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6)
# Values that often pass validation, so the property tests reach past the first check.
ids = st.sampled_from([WEB1, WEB2, WEB1_DATA, WEB1_LOGS, WEB2_DATA, PID, "vdb", "/dev/vdc", "", "x"])
id_like = ids | st.text(max_size=40)
request_values = {
    "server_id": st.sampled_from([WEB1, WEB2, "web-1"]),
    "volume_id": st.sampled_from([WEB1_DATA, WEB2_DATA, "vol-1"]),
    "device": st.sampled_from(["vdb", "/dev/vdc", "eth0"]),
    "project_id": st.sampled_from([PID, "p"]),
}
# A detach request, valid more often than not; a label map holds the same.
requests = st.fixed_dictionaries(
    {"server_id": request_values["server_id"]},
    optional={name: values for name, values in request_values.items() if name != "server_id"},
)


def json_text(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[bytes]:
    return values.map(lambda value: json.dumps(value).encode())

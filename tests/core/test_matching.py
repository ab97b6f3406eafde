"""The ids' patterns are checked by ``Matching`` (Python's ``re``), not by pydantic's ``pattern``
constraint (pydantic-core's Rust engine); pydantic's constraint is the oracle: the same strings
pass, and a string that fails gets the same error, so messages, field paths and the published
JSON Schema are unchanged."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from handler.core.models import (
    DEVICE,
    DEVICE_PATTERN,
    JOB_ID,
    JOB_ID_PATTERN,
    PROJECT_ID,
    PROJECT_ID_PATTERN,
    UUID,
    UUID_PATTERN,
    DetachRequest,
    Matching,
)


def _pair(matching: Matching, pattern: str) -> tuple[type[BaseModel], type[BaseModel]]:
    class Ours(BaseModel):
        value: Annotated[str, matching]

    class Pydantics(BaseModel):
        value: str = Field(pattern=pattern)

    return Ours, Pydantics


PAIRS = {
    "uuid": _pair(UUID, UUID_PATTERN),
    "project": _pair(PROJECT_ID, PROJECT_ID_PATTERN),
    "job": _pair(JOB_ID, JOB_ID_PATTERN),
    "device": _pair(DEVICE, DEVICE_PATTERN),
}


def _errors(model: type[BaseModel], value: object) -> list[Any] | None:
    try:
        model(value=value)
    except ValidationError as error:
        return error.errors(include_url=False)
    return None


# Near misses: the characters the patterns use, a few they do not, and the edges of each form.
_ALPHABET = "0123456789abcdefABCDEFxyzvhsnm/-\n \x00é"
_NEAR = st.sampled_from(
    [
        "1b3c5e7f-0000-4000-8000-00000000aaaa",
        "0123456789abcdef0123456789abcdef",
        "vdb",
        "/dev/nvme0n1",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(sorted(PAIRS)),
    value=st.one_of(
        st.text(alphabet=_ALPHABET, max_size=40),
        _NEAR,
        st.builds(lambda near, tail: near + tail, _NEAR, st.sampled_from(["\n", " ", "0", "x", "\r\n"])),
        st.builds(lambda head, near: head + near, st.sampled_from(["\n", " ", "0"]), _NEAR),
        st.integers(),
        st.none(),
    ),
)
def test_the_same_strings_pass_and_fail_with_the_same_error(kind: str, value: object) -> None:
    ours, pydantics = PAIRS[kind]
    assert _errors(ours, value) == _errors(pydantics, value)


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_the_json_schema_is_the_one_pydantic_publishes(kind: str) -> None:
    ours, pydantics = PAIRS[kind]
    assert ours.model_json_schema()["properties"] == pydantics.model_json_schema()["properties"]


def test_a_trailing_newline_never_slips_through() -> None:
    with pytest.raises(ValidationError) as caught:
        DetachRequest(
            server_id="1b3c5e7f-0000-4000-8000-00000000aaaa\n",
            volume_id="1b3c5e7f-0000-4000-8000-00000000bbbb",
        )
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"]) == (("server_id",), "string_pattern_mismatch")

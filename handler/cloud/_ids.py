"""Ids are checked before they become a path segment of a signed call.

The models' patterns stop a hostile id where it enters; this is the second line of defence.
httpx removes dot segments after the client has percent-encoded each one, so a job id of ``..``
would sign and send ``GET /v1/{project}`` instead of ``GET /v1/{project}/jobs/{job_id}``. An id
that is not in the form the cloud issues raises ``InvalidId`` and nothing is sent.
"""

from __future__ import annotations

import re

from handler.cloud._errors import CloudError
from handler.core.models import JOB_ID, PROJECT_ID, UUID

_UUID = (UUID.regex, "a UUID")
# Each kind of id, the form the cloud issues (fullmatch: no trailing newline slips through `$`).
# The SMN topic's pattern is compiled when SMN is first called (``re``'s cache keeps it).
_FORMS: dict[str, tuple[re.Pattern[str] | str, str]] = {
    "project_id": (PROJECT_ID.regex, "a project ID (32 hex digits)"),
    "server_id": _UUID,
    "volume_id": _UUID,
    "job_id": (JOB_ID.regex, "a job ID (32 hex digits or a UUID)"),
    "topic_urn": (
        r"urn:smn:[a-z0-9-]{1,64}:[0-9a-fA-F]{32}:[A-Za-z0-9_-]{1,255}",
        "an SMN topic URN (urn:smn:{region}:{project_id}:{topic})",
    ),
}
_SHOWN = 40  # characters of a refused id repeated in the message


class InvalidId(CloudError, ValueError):
    """An id not in the form the cloud issues: no path was built from it, no request sent."""

    def __init__(self, kind: str, value: str, form: str) -> None:
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
        super().__init__(f"{kind} {shown!r} is not {form}; no request was sent")
        self.kind = kind


def checked(kind: str, value: str) -> str:
    """``value`` if it is an id of ``kind`` (``project_id``, ``server_id``, ``volume_id``,
    ``job_id``, ``topic_urn``) in the form the cloud issues, else ``InvalidId``."""
    pattern, form = _FORMS[kind]
    if re.fullmatch(pattern, value) is None:
        raise InvalidId(kind, value, form)
    return value

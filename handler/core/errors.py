"""The root of ecs-detach's exceptions, and what an API error means for a detach: retry later,
done already, or refused for good.

Pure decision logic over (HTTP status, error code, message); docs/cloud-api.md §3.
"""

from __future__ import annotations

from enum import Enum


class EcsDetachError(Exception):
    """The root of every exception ecs-detach defines; ``handler/errors.py`` shows the tree.

    It lives in ``handler.core`` so that core's own errors (``InvalidInput``) can derive from it
    while core imports nothing outside itself; ``handler.errors`` re-exports it.
    """


# Other commands are running on the server; the Nova path says conflictingRequest.
_BUSY_CODES = frozenset({"Ecs.0603", "conflictingRequest"})
# Backend hiccups and task-submission failures the catalogue says to retry.
_TRANSIENT_CODES = frozenset({"Ecs.0002", "Ecs.0615", "Ecs.1001", "Ecs.1002", "APIGW.0308"})


class Disposition(str, Enum):
    BUSY = "busy"  # other commands are running on the server: try again in a while
    RETRY = "retry"  # throttled, or a transient failure: try again soon
    UNAUTHORIZED = "unauthorized"  # the cloud refused our credentials: ours to fix, not the request's
    ALREADY_DETACHED = "already_detached"  # the volume is not (or no longer) attached
    REJECTED = "rejected"  # the request cannot succeed as it stands


def classify_detach_error(status: int, code: str, message: str) -> Disposition:
    """Classify an error answer to ``DELETE …/detachvolume/…``."""
    if code == "Ecs.0111":
        return Disposition.ALREADY_DETACHED
    if code == "Ecs.1000" and "itemnotfound" in message.lower():
        return Disposition.ALREADY_DETACHED  # the volume is gone (Terraform reads it so too)
    if code in _BUSY_CODES:
        return Disposition.BUSY
    if status in (401, 403):
        return Disposition.UNAUTHORIZED
    if status == 429 or status >= 500 or code in _TRANSIENT_CODES:
        return Disposition.RETRY
    return Disposition.REJECTED


def is_retryable(status: int, code: str) -> bool:
    """For read calls (show job, block devices): worth another try later?"""
    return status == 429 or status >= 500 or code in _BUSY_CODES or code in _TRANSIENT_CODES

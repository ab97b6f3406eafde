"""One configured secret and the routes it may call.

In every secret list (``ECS_DETACH_WEBHOOK_BEARER_TOKENS`` and the others) an entry is either a
plain secret, which may call every route, or an object naming its routes::

    ["tok-for-everything", {"secret": "tok-am", "routes": ["/alertmanager"]}]

A route is ``/``, ``/alertmanager``, ``/grafana``, ``/smn``, ``/tickets/{mapping}`` or
``/tickets/*`` (every mapping), ``poll``: handing ``ecs-detach.accepted`` events on ``/smn`` to
the poll function, ``/approvals``: deciding approvals (``/approvals/{id}``), or ``/console``:
reading the web console (``handler/local/console``; deciding there needs ``/approvals`` too).
None of ``poll``, ``/approvals`` and ``/console`` is ever implied, not even by a plain secret: a
poll event is trusted from the jobs topic's own SMN signature or a credential that names
``poll``, only a credential that names ``/approvals`` may decide one, and only one that names
``/console`` may read the console.

An entry may carry a ``name``: the identity it stands for (``{"secret": …, "name": "alice",
"routes": ["/approvals"]}``), recorded as the approver of its decisions and as the requester of
the requests it sends (four eyes: the same identity may not approve its own request).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

POLL = "poll"
APPROVALS = "/approvals"
CONSOLE = "/console"
TICKETS = "/tickets/"
ROUTES = ("/", "/alertmanager", "/grafana", "/smn", APPROVALS, CONSOLE)
_NEVER_IMPLIED = (POLL, APPROVALS, CONSOLE)
ANY_TICKET = "/tickets/*"


def normal_route(path: str) -> str:
    return path.rstrip("/") or "/"


class WebhookCredential(BaseModel):
    """A secret (a token, ``user:password``, an HMAC or ``whsec_…`` secret) and its routes."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True)

    secret: SecretStr
    routes: tuple[str, ...] | None = None  # None: every route but poll, /approvals and /console
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[^\s:][^\s]*$")

    @model_validator(mode="before")
    @classmethod
    def _plain_secret(cls, data: Any) -> Any:
        return {"secret": data} if isinstance(data, (str, SecretStr)) else data

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, routes: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if routes is None:
            return None
        if not routes:
            raise ValueError("an empty routes list allows nothing: leave routes out to allow every route")
        normal = tuple(route if route == POLL else normal_route(route) for route in routes)
        for index, route in enumerate(normal):
            ticket = route.startswith(TICKETS) and len(route) > len(TICKETS)
            if route not in (*ROUTES, POLL) and not ticket:
                known = f"{', '.join(ROUTES)}, {TICKETS}{{mapping}}, {ANY_TICKET} or {POLL}"
                raise ValueError(f"routes[{index}] {route[:40]!r} is no route: use {known}")
        return normal

    def allows(self, route: str) -> bool:
        if self.routes is None:
            return route not in _NEVER_IMPLIED
        return route in self.routes or (route.startswith(TICKETS) and ANY_TICKET in self.routes)

    def scope(self) -> str:
        """What this credential may call, for refusals (never the secret)."""
        return (
            "every route but poll, /approvals and /console" if self.routes is None else ", ".join(self.routes)
        )

    def identity(self, scheme: str) -> str:
        """Who this credential stands for: its ``name``; else a basic-auth user's name; else
        ``{scheme}:`` and a short digest of the secret (it names the credential, reveals
        nothing of it, and two uses of one unnamed credential are the same identity)."""
        if self.name:
            return self.name
        secret = self.secret.get_secret_value()
        if scheme == "basic":
            return f"basic:{secret.partition(':')[0]}"
        return f"{scheme}:{hashlib.sha256(secret.encode()).hexdigest()[:12]}"

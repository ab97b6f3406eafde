"""One configured secret and the routes it may call.

In every secret list (``ECS_DETACH_WEBHOOK_BEARER_TOKENS`` and the others) an entry is either a
plain secret, which may call every route, or an object naming its routes::

    ["tok-for-everything", {"secret": "tok-am", "routes": ["/alertmanager"]}]

A route is ``/``, ``/alertmanager``, ``/grafana``, ``/smn``, ``/tickets/{mapping}`` or
``/tickets/*`` (every mapping), or ``poll``: handing ``ecs-detach.accepted`` events on ``/smn`` to
the poll function. ``poll`` is never implied, not even by a plain secret: a poll event is trusted
from the jobs topic's own SMN signature, or from a credential that names ``poll``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

POLL = "poll"
TICKETS = "/tickets/"
ROUTES = ("/", "/alertmanager", "/grafana", "/smn")
ANY_TICKET = "/tickets/*"


def normal_route(path: str) -> str:
    return path.rstrip("/") or "/"


class WebhookCredential(BaseModel):
    """A secret (a token, ``user:password``, an HMAC or ``whsec_…`` secret) and its routes."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    secret: SecretStr
    routes: tuple[str, ...] | None = None  # None: every route but ``poll``

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
            return route != POLL
        return route in self.routes or (route.startswith(TICKETS) and ANY_TICKET in self.routes)

    def scope(self) -> str:
        """What this credential may call, for refusals (never the secret)."""
        return "every route but poll" if self.routes is None else ", ".join(self.routes)

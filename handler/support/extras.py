"""Which optional dependency group ("extra") each backend URL needs, and whether it is installed.

The broker topics, the Redis store and the PostgreSQL history import their client library only
when a URL asks for it, so a package built without the matching extra fails on the first use of
that URL; the webhook routes (``WEBHOOKS``) likewise need theirs. The package builder
(``ecs-detach package``) adds the extras the URLs it is given (and ``--webhook-routes``) need,
Terraform checks the package's manifest, and the FunctionGraph initializer (the router, for the
webhook routes) names the missing extra instead of a ModuleNotFoundError.
"""

import importlib.util
from collections.abc import Iterable
from typing import NamedTuple

# URL scheme → the extra of pyproject.toml that serves it (infra/terraform/package.tf mirrors this).
SCHEME_EXTRAS = {
    "redis": "redis",
    "rediss": "redis",
    "nats": "nats",
    "tls": "nats",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "postgresql": "postgres",  # the audit history (ECS_DETACH_HISTORY)
    "postgres": "postgres",
}
# The extra of the HTTP webhook routes (an API Gateway trigger): SMN signatures, CloudEvents over
# HTTP, ticket mappings, Standard Webhooks. Functions fed by other triggers never import them.
WEBHOOKS = "webhooks"
# Extra → the module its backend imports.
EXTRA_MODULES = {
    "redis": "redis",
    "nats": "nats",
    "rabbitmq": "aio_pika",
    "notify": "jinja2",
    "postgres": "psycopg",
    WEBHOOKS: "cryptography",
}


class Need(NamedTuple):
    """``setting`` (a name, never its value: URLs carry passwords) needs ``extra`` for ``scheme``."""

    setting: str
    scheme: str
    extra: str


def scheme_of(url: str) -> str:
    """The scheme of ``url`` (``rediss`` for ``rediss://:pw@host``), lower case; empty if none."""
    scheme, separator, _ = url.partition("://")
    return scheme.lower() if separator else ""


def needs(urls: Iterable[tuple[str, str]]) -> list[Need]:
    """What each ``(setting, url)`` needs installed, in order; URLs served by the core package
    (sqlite, smn, https) need nothing."""
    found = []
    for setting, url in urls:
        scheme = scheme_of(url)
        if scheme in SCHEME_EXTRAS:
            found.append(Need(setting, scheme, SCHEME_EXTRAS[scheme]))
    return found


def missing(urls: Iterable[tuple[str, str]]) -> list[Need]:
    """The needs of ``urls`` whose extra is not installed here."""
    return [need for need in needs(urls) if importlib.util.find_spec(EXTRA_MODULES[need.extra]) is None]


def webhooks_missing() -> str | None:
    """Why the webhook routes cannot be served here (their extra is not installed), or None."""
    if importlib.util.find_spec(EXTRA_MODULES[WEBHOOKS]) is not None:
        return None
    return (
        f"the webhook routes (an API Gateway trigger) need the {WEBHOOKS} extra, which this package "
        f"lacks: ecs-detach package --webhook-routes"
    )


def describe(unmet: Iterable[Need]) -> str:
    """One sentence per missing extra, naming the settings and the command that fixes it."""
    by_extra: dict[str, list[Need]] = {}
    for need in unmet:
        by_extra.setdefault(need.extra, []).append(need)
    return "; ".join(
        f"{' and '.join(f'{n.setting} ({n.scheme}://)' for n in group)} need(s) the {extra} extra, "
        f"which this package lacks: install the {extra} extra: ecs-detach package --extra {extra}"
        for extra, group in sorted(by_extra.items())
    )

"""Reading topic URLs, and echoing them without their secrets (``redact_url``)."""

from typing import NamedTuple
from urllib.parse import SplitResult, parse_qs, unquote

from handler.support.log import redact_url

from ._base import TopicConfigError


class BrokerAddress(NamedTuple):
    """Where a broker is and how to log in, read from ``scheme://[user[:password]@]host[:port]/path``."""

    scheme: str
    host: str
    port: int
    path: str  # unquoted, without the leading "/"
    username: str | None
    password: str | None
    safe_url: str  # the URL as ``redact_url`` shows it: fit for messages and logs

    @property
    def secrets(self) -> tuple[str, ...]:
        """What a broker's error text must not quote: the password, or a user name given
        alone (``nats://TOKEN@host`` carries a token there)."""
        return tuple(filter(None, (self.password, self.username if self.password is None else None)))


def query_options(url: str, parts: SplitResult, allowed: tuple[str, ...], usage: str) -> dict[str, str]:
    """The query of ``url`` as single values; unknown or repeated names are errors."""
    kind = parts.scheme
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise TopicConfigError(f"malformed query in {kind} topic URL {redact_url(url)}: {usage}") from None
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise TopicConfigError(
            f"unknown parameter {', '.join(unknown)} in {kind} topic URL {redact_url(url)}: {usage}"
        )
    options: dict[str, str] = {}
    for key, values in query.items():
        if len(values) != 1 or not values[0]:
            raise TopicConfigError(f"{kind} topic URL {redact_url(url)} needs one non-empty {key}: {usage}")
        options[key] = values[0]
    return options


def broker_address(url: str, parts: SplitResult, default_port: int, usage: str) -> BrokerAddress:
    """Host, port, path and credentials of a broker URL, checked."""
    malformed = f"malformed {parts.scheme} topic URL {redact_url(url)}: {usage}"
    if parts.fragment:
        raise TopicConfigError(malformed)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise TopicConfigError(malformed) from None
    if not host:
        raise TopicConfigError(malformed)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerAddress(
        scheme=parts.scheme,
        host=host,
        port=port or default_port,
        path=unquote(parts.path[1:]),
        username=username,
        password=password,
        safe_url=redact_url(url),
    )


def broker_target(
    url: str, parts: SplitResult, *, kind: str, port: int, tls_scheme: str, default_name: str, usage: str
) -> tuple[BrokerAddress, str, str | None]:
    """A broker URL's address, topic name (``?topic=``, else ``default_name``) and CA file
    (``&ca=``, only with the TLS scheme)."""
    options = query_options(url, parts, ("topic", "ca"), usage)
    address = broker_address(url, parts, port, usage)
    if "ca" in options and parts.scheme != tls_scheme:
        raise TopicConfigError(f"{kind} topic URL {address.safe_url}: ca= needs {tls_scheme}://")
    return address, options.get("topic", default_name), options.get("ca")

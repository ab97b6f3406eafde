"""The web console's people: ``ECS_DETACH_CONSOLE_USERS``, each a name and a password hash.

A hash is kept in werkzeug's format, so either side can make it::

    scrypt:32768:8:1$<salt>$<hex>            (what ``ecs-detach console hash-password`` prints)
    pbkdf2:sha256:600000$<salt>$<hex>

Only the standard library is used (``hashlib.scrypt``, ``hashlib.pbkdf2_hmac``); the password
itself is never stored, and the comparison takes constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import BaseModel, ConfigDict, Field, field_validator

from handler.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
_MAX_SCRYPT_N = 1 << 20  # refuse hashes that would cost more than ~1 GiB to check
_MAX_PBKDF2_ROUNDS = 10_000_000


class PasswordHashError(ConfigError):
    """A stored hash that is not in a known format (the message never shows the hash)."""


def hash_password(password: str, *, salt: str | None = None) -> str:
    """The scrypt hash of ``password``, in werkzeug's format."""
    salt = salt or secrets.token_urlsafe(12)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}${salt}${digest}"


def _scrypt(password: str, salt: str, n: int, r: int, p: int) -> str:
    return hashlib.scrypt(
        password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p, dklen=64
    ).hex()


def _parse(stored: str) -> tuple[str, list[int], str, str]:
    """The method, its numeric parameters, the salt and the digest of a stored hash."""
    method, _, rest = stored.partition("$")
    salt, _, digest = rest.partition("$")
    name, *params = method.split(":")
    if not (salt and digest) or name not in ("scrypt", "pbkdf2"):
        raise PasswordHashError("not a scrypt:N:r:p$salt$hex or pbkdf2:sha256:rounds$salt$hex hash")
    if name == "pbkdf2":
        if len(params) != 2 or params[0] not in hashlib.algorithms_guaranteed or not params[1].isdigit():
            raise PasswordHashError("a pbkdf2 hash is pbkdf2:<hash name>:<rounds>$salt$hex")
        rounds = int(params[1])
        if not 1 <= rounds <= _MAX_PBKDF2_ROUNDS:
            raise PasswordHashError(f"pbkdf2 rounds must be 1 to {_MAX_PBKDF2_ROUNDS}")
        return f"pbkdf2:{params[0]}", [rounds], salt, digest
    if len(params) != 3 or not all(param.isdigit() for param in params):
        raise PasswordHashError("a scrypt hash is scrypt:N:r:p$salt$hex")
    n, r, p = (int(param) for param in params)
    if not (1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise PasswordHashError("scrypt N must be a power of two up to 2**20, r 1 to 32, p 1 to 16")
    return "scrypt", [n, r, p], salt, digest


def check_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (``PasswordHashError`` for a bad hash)."""
    method, params, salt, digest = _parse(stored)
    if method == "scrypt":
        n, r, p = params
        computed = _scrypt(password, salt, n, r, p)
    else:
        algorithm = method.partition(":")[2]
        computed = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt.encode(), params[0]).hex()
    return hmac.compare_digest(computed.encode(), digest.encode())


class ConsoleUser(BaseModel):
    """One person who may open the console: ``{"name": "alice", "password_hash": "scrypt:…",
    "approve": true}``. ``approve`` lets them decide approvals there (four eyes still applies:
    nobody approves a request they asked for)."""

    # defer_build: Settings validates the list inline; this model's own validator is built only
    # if something validates a ConsoleUser by itself.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True)

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\s:]+$")
    password_hash: str = Field(min_length=1, max_length=512)
    approve: bool = False

    @field_validator("password_hash")
    @classmethod
    def _known_format(cls, value: str) -> str:
        _parse(value)  # PasswordHashError is a ValueError: the setting is refused, by name
        return value

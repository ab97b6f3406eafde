"""The console's people: password hashes in werkzeug's format (scrypt made here, PBKDF2 read
too), checked in constant time; hashes that are malformed or would cost too much to check are
refused when the settings are read, by name and without echoing them."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from handler.security import ConsoleUser, PasswordHashError, check_password, hash_password
from handler.settings import Settings


def test_a_scrypt_hash_checks_its_password_and_no_other() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt:32768:8:1$")
    assert "correct horse" not in stored
    assert check_password(stored, "correct horse")
    assert not check_password(stored, "correct horse ")
    assert not check_password(stored, "")
    assert hash_password("correct horse") != stored  # a salt of its own each time


def test_a_pbkdf2_hash_as_werkzeug_makes_it_is_read() -> None:
    digest = hashlib.pbkdf2_hmac("sha256", b"s3cret", b"somesalt", 1000).hex()
    stored = f"pbkdf2:sha256:1000$somesalt${digest}"
    assert check_password(stored, "s3cret")
    assert not check_password(stored, "S3cret")


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ("plain-password", "not a scrypt"),
        ("md5:1$salt$abc", "not a scrypt"),
        ("scrypt:32768:8$salt$abc", "scrypt:N:r:p"),
        ("scrypt:1000:8:1$salt$abc", "power of two"),
        ("scrypt:4194304:8:1$salt$abc", "power of two up to"),  # about 4 GiB to check
        ("scrypt:16384:64:1$salt$abc", "r 1 to 32"),
        ("pbkdf2:sha256$salt$abc", "pbkdf2:<hash name>:<rounds>"),
        ("pbkdf2:nohash:1000$salt$abc", "pbkdf2:<hash name>:<rounds>"),
        ("pbkdf2:sha256:0$salt$abc", "rounds must be"),
        ("scrypt:16384:8:1$$abc", "not a scrypt"),
    ],
)
def test_a_hash_that_cannot_be_checked_is_refused(stored: str, says: str) -> None:
    with pytest.raises(PasswordHashError, match=says):
        check_password(stored, "anything")


def test_console_users_are_read_from_the_settings_and_refused_by_name() -> None:
    good = hash_password("pw")
    settings = Settings(console_users=[{"name": "alice", "password_hash": good, "approve": True}])
    assert settings.console_users == [ConsoleUser(name="alice", password_hash=good, approve=True)]
    assert not ConsoleUser(name="bob", password_hash=good).approve  # read-only unless said
    for users, says in (
        ([{"name": "alice", "password_hash": "hunter2"}], "console_users.0.password_hash"),
        ([{"name": "al ice", "password_hash": good}], "console_users.0.name"),
        ([{"name": "alice", "password": "pw"}], "console_users.0"),
        ([{"name": "a", "password_hash": good}, {"name": "a", "password_hash": good}], "own name"),
    ):
        with pytest.raises(ValidationError, match=says) as refused:
            Settings(console_users=users)
        assert "hunter2" not in str(refused.value)
    with pytest.raises(ValidationError, match="console_secret must be at least 32 characters"):
        Settings(console_secret="short")

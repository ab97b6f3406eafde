"""open_store: the URL picks the backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import handler.store
from handler.store import RedisStore, SqliteStore, open_store


def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///state/store.db")
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == tmp_path / "state" / "store.db"
        assert store.path.exists()
    finally:
        store.close()


def test_sqlite_absolute_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == tmp_path / "store.db"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["redis://:pw@127.0.0.1:6379/0", "rediss://127.0.0.1:6380/1"])
def test_redis_urls(url: str) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, RedisStore)
        assert "pw" not in repr(store)
    finally:
        store.close()


@pytest.mark.parametrize(
    "url", ["sqlite://host/store.db", "sqlite:///", "sqlite:///dir/", "sqlite:///x.db?mode=ro", "sqlite:x.db"]
)
def test_malformed_sqlite_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite:///relative/path\.db"):
        open_store(url)


@pytest.mark.parametrize(
    "url", ["mysql://admin:hunter2@db:3306/x", "admin:hunter2@db", "memcached://h?password=hunter2"]
)
def test_unknown_schemes_list_the_supported_ones_without_secrets(url: str) -> None:
    with pytest.raises(ValueError, match=r"supported: sqlite://, redis://, rediss://") as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)


def test_redis_store_is_exported_lazily() -> None:
    assert handler.store.RedisStore is RedisStore
    with pytest.raises(AttributeError, match="NoSuchStore"):
        handler.store.NoSuchStore  # noqa: B018

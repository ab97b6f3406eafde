"""What only the Redis store does: its URL, its keys and expiries, and keeping secrets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from handler.store import ClaimState, RedisStore, StoreError
from tests.store.conftest import REDIS_HOST, REDIS_PORT, REDIS_URL, RedisBackend, require_redis

SECRET = "s3cr3t-pa55"


@pytest.fixture
def redis_backend() -> Iterator[RedisBackend]:
    require_redis()
    backend = RedisBackend()
    yield backend
    backend.close()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True) as raw:
        yield raw


@pytest.mark.parametrize(
    "url",
    [
        "redis://h",
        "redis://h:6380/2",
        f"redis://:{SECRET}@h:6379/0",
        f"redis://user:{SECRET}@h/",
        "rediss://h:6380/0",
        "rediss://h/0?ca=/etc/ca.pem",
        "redis://h/0?prefix=staging",
    ],
)
def test_accepts_redis_urls_without_connecting(url: str) -> None:
    store = RedisStore(url)
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@/0",  # no host
        f"redis://:{SECRET}@h:port/0",
        f"redis://:{SECRET}@h/db",
        f"redis://:{SECRET}@h/0/1",
        f"redis://:{SECRET}@h/²",
        f"redis://:{SECRET}@[::1/0",
        f"redis://:{SECRET}@h/0?topic=x",
        f"redis://:{SECRET}@h/0?ca=",
        f"redis://:{SECRET}@h/0?ca=/a&ca=/b",
        f"redis://:{SECRET}@h/0?prefix=",
        f"redis://:{SECRET}@h/0#frag",
        f"http://:{SECRET}@h/0",
    ],
)
def test_refuses_malformed_urls_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis\[s\]://") as caught:
        RedisStore(url)
    assert SECRET not in str(caught.value)


def test_ca_needs_tls() -> None:
    with pytest.raises(ValueError, match="ca= needs rediss://") as caught:
        RedisStore(f"redis://:{SECRET}@h/0?ca=/etc/ca.pem")
    assert SECRET not in str(caught.value)


def test_repr_and_errors_hide_the_password() -> None:
    store = RedisStore(f"redis://user:{SECRET}@127.0.0.1:1/0", prefix="p:")
    try:
        assert repr(store) == "RedisStore('redis://***@127.0.0.1:1/0', prefix='p:')"
        with pytest.raises(StoreError) as caught:
            store.begin("k", "fp", in_progress_ttl_s=1)
        assert "redis://***@127.0.0.1:1/0" in str(caught.value)
        assert SECRET not in str(caught.value)
        assert SECRET not in repr(caught.value.__cause__)
    finally:
        store.close()


def test_a_quoted_password_is_scrubbed_from_redis_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(f"redis://:{SECRET}@127.0.0.1:1/0")

    def leaky(**_: object) -> None:
        raise redis.ResponseError(f"WRONGPASS {SECRET} rejected")

    monkeypatch.setattr(store, "_release", leaky)
    try:
        with pytest.raises(StoreError, match=r"WRONGPASS \*\*\* rejected") as caught:
            store.release("k")
        assert SECRET not in str(caught.value)
        assert caught.value.__cause__ is None
    finally:
        store.close()


def test_keys_live_under_the_prefix_with_redis_expiries(
    redis_backend: RedisBackend, client: redis.Redis
) -> None:
    store = redis_backend.make(keep_abandoned_s=100)
    prefix = redis_backend.prefix
    store.begin("k", "fp", in_progress_ttl_s=10)
    store.acquire("server:p:s", "k", ttl_s=30)

    assert sorted(client.scan_iter(match=prefix + "*")) == [prefix + "idem:k", prefix + "lock:server:p:s"]
    assert 109_000 < client.pttl(prefix + "idem:k") <= 110_000  # the claim plus keep_abandoned_s
    assert 29_000 < client.pttl(prefix + "lock:server:p:s") <= 30_000
    store.complete("k", {"job_id": "job-1"}, ttl_s=86_400)
    assert 86_399_000 < client.pttl(prefix + "idem:k") <= 86_400_000


def test_prefixes_separate_stores(redis_backend: RedisBackend) -> None:
    store = redis_backend.make()
    other = RedisStore(REDIS_URL, prefix=f"ecs-detach-test:{uuid.uuid4().hex[:12]}:")
    try:
        store.begin("k", "fp", in_progress_ttl_s=60)
        store.acquire("l", "o", ttl_s=60)

        assert other.begin("k", "other", in_progress_ttl_s=1).state is ClaimState.NEW
        assert other.holder("l") is None
    finally:
        other.release("k")
        other.close()


def test_a_retried_begin_recognises_its_own_claim(redis_backend: RedisBackend) -> None:
    """A reply lost to a dropped connection: redis-py runs the script again with the same token."""
    store = redis_backend.make()
    record_key = redis_backend.prefix + "idem:k"
    args = ["fp", 60_000, 0, "token-1"]

    first = store._begin(keys=[record_key], args=args)  # type: ignore[attr-defined]
    retried = store._begin(keys=[record_key], args=args)  # type: ignore[attr-defined]

    assert (first[0], retried[0]) == ("new", "new")
    assert store.begin("k", "fp", in_progress_ttl_s=60).state is ClaimState.IN_PROGRESS


def test_a_wrong_type_key_is_a_store_error(redis_backend: RedisBackend, client: redis.Redis) -> None:
    client.set(redis_backend.prefix + "idem:k", "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        redis_backend.make().begin("k", "fp", in_progress_ttl_s=1)


def test_a_url_prefix_keeps_deployments_that_share_a_redis_apart(client: redis.Redis) -> None:
    require_redis()
    run = uuid.uuid4().hex[:8]
    staging = RedisStore(f"{REDIS_URL}?prefix=staging-{run}")
    production = RedisStore(f"{REDIS_URL}?prefix=production-{run}")
    try:
        claim = staging.begin("alert-1", "fp", in_progress_ttl_s=30)
        assert claim.state is ClaimState.NEW
        staging.complete("alert-1", {"outcome": "accepted"}, ttl_s=60)
        # The same key in the other deployment is new: not a duplicate of staging's request.
        assert production.begin("alert-1", "fp", in_progress_ttl_s=30).state is ClaimState.NEW
        assert client.exists(f"staging-{run}:idem:alert-1")
        assert client.exists(f"production-{run}:idem:alert-1")
    finally:
        client.delete(f"staging-{run}:idem:alert-1", f"production-{run}:idem:alert-1")
        staging.close()
        production.close()


def test_the_outbox_index_lives_under_the_prefix_and_follows_its_records(
    redis_backend: RedisBackend, client: redis.Redis
) -> None:
    store = redis_backend.make()
    index = redis_backend.prefix + "outbox"
    store.begin("k", "fp", in_progress_ttl_s=60)
    store.note("k", {"job_id": "job-1"}, outbox=True)
    assert client.zrange(index, 0, -1) == ["k"]

    store.complete("k", {"outcome": "accepted"}, ttl_s=60)

    assert client.exists(index) == 0


def test_an_index_entry_without_its_record_is_dropped(
    redis_backend: RedisBackend, client: redis.Redis
) -> None:
    """A crash between the index entry and the record's note leaves only the entry: the next
    sweep drops it instead of meeting it at the head of every range."""
    store = redis_backend.make()
    index = redis_backend.prefix + "outbox"
    client.zadd(index, {"crashed": 1})
    store.begin("unmarked", "fp", in_progress_ttl_s=60)
    client.zadd(index, {"unmarked": 2})

    assert store.take_outbox(older_than_s=0, in_progress_ttl_s=60, limit=10) == []
    assert client.exists(index) == 0

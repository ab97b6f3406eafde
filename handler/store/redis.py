"""The store on Redis (5.0 or later, Huawei DCS included).

URL: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS (``?ca=/path/ca.pem``
adds a CA bundle, e.g. the one DCS offers for download). ``?prefix=NAME`` keeps the keys under
``NAME:`` instead of ``ecs-detach:``, so deployments that share one Redis (staging and
production, or test runs) never see each other's records.

Keys, after the prefix:

* ``idem:KEY``, a hash per idempotency key: ``fp`` (fingerprint), ``state`` (``run`` or
  ``done``), ``until`` (ms, Redis time, when an in-progress claim lapses), ``token`` (of the
  ``begin`` call that claimed it), ``attempt``, ``record`` (JSON) and one ``p:NAME`` field per
  noted progress value (JSON). Its Redis expiry is the record's: the claim plus
  ``keep_abandoned_s`` while in progress, ``ttl_s`` once completed.
* ``lock:NAME``, a string: the owner, with the lock's expiry as its Redis expiry.
* ``outbox``, a sorted set indexing the records in the outbox: member the idempotency key,
  score the ms since which it waits (the record's own ``outbox`` field is the truth).
* ``resume``, a sorted set indexing the resumable records: member the idempotency key, score
  the ms at which its claim lapses as far as the index knows (the record's own ``resume`` and
  ``until`` fields are the truth: a claim taken over since is found later than indexed).

Every operation is one Lua script on one key, so it is atomic and works on cluster proxies.
The outbox and resume indexes are kept beside the records, not atomically with them:
``note(outbox=True)`` (``resume=True``) adds the key to the index *before* marking the record,
and ``complete``/``release`` (and ``park`` for ``resume``) remove it after, so a crash in
between leaves an index entry without a marked record (never the reverse); ``take_outbox``
checks each entry against its record, drops those of records gone, completed or unmarked and
moves the others to their record's time. Its cost: one ``TIME``, one
``ZRANGEBYSCORE … LIMIT`` (O(log N + limit) for N records in the outbox) and one script per
entry due; each request that enters the outbox adds one ``ZADD`` and one ``ZREM``.
Times come from Redis (``TIME``), not from the clients' clocks. redis-py retries a command
whose connection dropped; a retried ``begin`` recognises its own claim by its token.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from handler.errors import ConfigError
from handler.support.log import redact_text, redact_url

from ._base import (
    DEFAULT_KEEP_ABANDONED_S,
    Acquired,
    Claim,
    ClaimLost,
    ClaimState,
    StoreError,
    Taken,
    check_acquire_all,
    check_age,
    check_keep,
    check_key,
    check_limit,
    check_ttl,
)

_USAGE = "use redis[s]://[[user]:password@]host[:port][/db][?ca=/path/ca.pem][&prefix=NAME]"
_PROGRESS = "p:"  # prefix of the hash fields holding noted progress

# KEYS record; ARGV fingerprint, ttl_ms, keep_ms, token.
# Returns {'conflict'}, {'done', record}, or {'in_progress' or 'new', attempt, ms left, HGETALL}.
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local f = redis.call('HMGET', key, 'fp', 'state', 'until', 'token', 'attempt', 'record')
local attempt = 1
if f[1] then
  if f[1] ~= ARGV[1] then return {'conflict'} end
  if f[2] == 'done' then return {'done', f[6]} end
  attempt = tonumber(f[5])
  if f[4] ~= ARGV[4] then
    local left = tonumber(f[3]) - now
    if left > 0 then return {'in_progress', attempt, left, redis.call('HGETALL', key)} end
    attempt = attempt + 1
  end
end
local ttl = tonumber(ARGV[2])
redis.call('HSET', key, 'fp', ARGV[1], 'state', 'run', 'until', now + ttl, 'token', ARGV[4],
  'attempt', attempt)
redis.call('PEXPIRE', key, ttl + tonumber(ARGV[3]))
return {'new', attempt, 0, redis.call('HGETALL', key)}
"""

# KEYS record; ARGV outbox (1 or 0), resume (1 or 0), field, value, field, value... Returns
# 0 if not in progress, else the ms at which its claim lapses. With outbox 1, the record's
# ``outbox`` field is set to now; with resume 1, its ``resume`` field to 1.
_NOTE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'until')
if f[1] ~= 'run' then return 0 end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'outbox', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'resume', 1) end
return tonumber(f[2])
"""

# KEYS record; ARGV record, ttl_ms. Returns 0 if there is no record, else 1, plus 2 if it was
# in the outbox, plus 4 if it was resumable.
_COMPLETE = """
local f = redis.call('HMGET', KEYS[1], 'fp', 'attempt', 'outbox', 'resume')
if not f[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', f[1], 'state', 'done', 'attempt', f[2], 'record', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local found = 1
if f[3] then found = found + 2 end
if f[4] then found = found + 4 end
return found
"""

# KEYS record. Deletes it if in progress; returns 0 if it was not, else 1, plus 2 if it was in
# the outbox, plus 4 if it was resumable.
_RELEASE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'outbox', 'resume')
if f[1] ~= 'run' then return 0 end
redis.call('DEL', KEYS[1])
local found = 1
if f[2] then found = found + 2 end
if f[3] then found = found + 4 end
return found
"""

_IN_OUTBOX, _RESUMABLE = 2, 4  # bits of what _COMPLETE and _RELEASE found

# KEYS record; ARGV ttl_ms, keep_ms. Takes the record if it is in progress, resumable and its
# claim has lapsed: {'taken', attempt, ms its new claim lapses, HGETALL}; {'gone'} if it is not
# resumable (any more); {'later', ms its claim lapses} if not yet due. An outbox entry keeps
# its time.
_TAKE_LAPSED = """
local f = redis.call('HMGET', KEYS[1], 'state', 'resume', 'attempt', 'until')
if f[1] ~= 'run' or not f[2] then return {'gone'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(f[4]) > now then return {'later', f[4]} end
local attempt = tonumber(f[3]) + 1
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'until', now + ttl, 'token', '', 'attempt', attempt)
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[2]))
return {'taken', attempt, now + ttl, redis.call('HGETALL', KEYS[1])}
"""

# KEYS record; ARGV older_than_ms, ttl_ms, keep_ms. Takes the record if it is in progress and
# has been in the outbox older_than_ms: {'taken', attempt, HGETALL}; {'gone'} if it is not in
# the outbox (any more); {'later', ms it entered the outbox} if not yet due.
_TAKE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'outbox', 'attempt')
if f[1] ~= 'run' or not f[2] then return {'gone'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(f[2]) > now - tonumber(ARGV[1]) then return {'later', f[2]} end
local attempt = tonumber(f[3]) + 1
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'until', now + ttl, 'token', '', 'attempt', attempt, 'outbox', now)
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[3]))
return {'taken', attempt, now, redis.call('HGETALL', KEYS[1])}
"""

# KEYS record; ARGV keep_ms, field, value, field, value... Returns 0 if not in progress, 2 if
# it was resumable (no more), else 1.
_PARK = """
local f = redis.call('HMGET', KEYS[1], 'state', 'resume')
if f[1] ~= 'run' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
redis.call('HSET', KEYS[1], 'until', now)
redis.call('HDEL', KEYS[1], 'resume')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if f[2] then return 2 end
return 1
"""

# KEYS record. Returns {} (no record), {'done', record} or {'in_progress', attempt, ms left, HGETALL}.
_PEEK = """
local f = redis.call('HMGET', KEYS[1], 'state', 'until', 'attempt', 'record')
if not f[1] then return {} end
if f[1] == 'done' then return {'done', f[4]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = math.max(tonumber(f[2]) - now, 0)
return {'in_progress', tonumber(f[3]), left, redis.call('HGETALL', KEYS[1])}
"""

# KEYS lock; ARGV owner, ttl_ms. Returns 1 if the owner holds it now, else 0.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS lock; ARGV owner. Returns 1 if it deleted the owner's lock, else 0.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


def _ms(seconds: float) -> int:
    """Whole milliseconds, rounded up, at least 1: Redis expiries are in ms."""
    return max(math.ceil(seconds * 1000), 1)


def _progress(flat: list[str]) -> dict[str, Any]:
    """The progress fields of a record's HGETALL, decoded."""
    pairs = zip(flat[::2], flat[1::2], strict=True)
    return {name[len(_PROGRESS) :]: json.loads(value) for name, value in pairs if name.startswith(_PROGRESS)}


class RedisStore:
    """The store on the Redis at ``url``; safe to share between threads (redis-py pools
    connections). Several instances and processes may use the same keys at once."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ecs-detach:",
        keep_abandoned_s: float = DEFAULT_KEEP_ABANDONED_S,
    ) -> None:
        check_keep(keep_abandoned_s)
        self._safe_url = redact_url(url)
        malformed = f"malformed redis store URL {self._safe_url}: {_USAGE}"
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port or 6379
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ConfigError(malformed) from None
        db = parts.path.removeprefix("/") or "0"
        if parts.scheme not in ("redis", "rediss") or parts.fragment or not host:
            raise ConfigError(malformed)
        if not (db.isascii() and db.isdigit()) or set(query) - {"ca", "prefix"}:
            raise ConfigError(malformed)
        if any(len(values) != 1 or not values[0] for values in query.values()):
            raise ConfigError(malformed)
        ca_file = query["ca"][0] if "ca" in query else None
        if ca_file is not None and parts.scheme != "rediss":
            raise ConfigError(f"redis store URL {self._safe_url}: ca= needs rediss://")
        self._password = unquote(parts.password) if parts.password else None
        self._prefix = f"{query['prefix'][0]}:" if "prefix" in query else prefix
        self._keep_ms = round(keep_abandoned_s * 1000)
        self._client: redis.Redis | None = redis.Redis(
            host=host,
            port=port,
            db=int(db),
            username=unquote(parts.username) if parts.username else None,
            password=self._password,
            ssl=parts.scheme == "rediss",
            ssl_ca_certs=ca_file,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
            client_name="ecs-detach",
            decode_responses=True,
        )
        self._begin = self._client.register_script(_BEGIN)
        self._note = self._client.register_script(_NOTE)
        self._complete = self._client.register_script(_COMPLETE)
        self._release = self._client.register_script(_RELEASE)
        self._park = self._client.register_script(_PARK)
        self._peek = self._client.register_script(_PEEK)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release_lock = self._client.register_script(_RELEASE_LOCK)
        self._take = self._client.register_script(_TAKE)
        self._take_lapsed = self._client.register_script(_TAKE_LAPSED)

    @property
    def prefix(self) -> str:
        return self._prefix

    def __repr__(self) -> str:
        return f"RedisStore({self._safe_url!r}, prefix={self._prefix!r})"

    @contextmanager
    def _redis(self) -> Iterator[redis.Redis]:
        """The client, with Redis errors turned into ``StoreError`` (credentials scrubbed)."""
        if self._client is None:
            raise StoreError(f"store {self._safe_url} is closed")
        try:
            yield self._client
        except redis.RedisError as exc:
            detail = redact_text(str(exc), self._password)
            cause = exc if detail == str(exc) else None
            raise StoreError(f"redis store {self._safe_url}: {detail}") from cause

    def _record(self, key: str) -> str:
        return f"{self._prefix}idem:{key}"

    def _lock(self, name: str) -> str:
        return f"{self._prefix}lock:{name}"

    @property
    def _outbox(self) -> str:
        return f"{self._prefix}outbox"

    @property
    def _resumable(self) -> str:
        return f"{self._prefix}resume"

    def begin(
        self,
        key: str,
        fingerprint: str,
        *,
        in_progress_ttl_s: float,
        resume: dict[str, Any] | None = None,
    ) -> Claim:
        check_key("key", key)
        check_key("fingerprint", fingerprint)
        check_ttl("in_progress_ttl_s", in_progress_ttl_s)
        token = uuid.uuid4().hex
        with self._redis():
            reply = self._begin(
                keys=[self._record(key)],
                args=[fingerprint, _ms(in_progress_ttl_s), self._keep_ms, token],
            )
        state = ClaimState(reply[0])
        if state is ClaimState.CONFLICT:
            return Claim(state)
        if state is ClaimState.DONE:
            return Claim(state, record=json.loads(reply[1]))
        attempt, left_ms, flat = int(reply[1]), int(reply[2]), reply[3]
        if state is ClaimState.NEW:
            found = _progress(flat)
            if resume is not None and not found:  # right after the claim (``Store.begin``)
                self.note(key, resume, resume=True)
            return Claim(state, progress=found, attempt=attempt)
        return Claim(state, progress=_progress(flat), attempt=attempt, expires_in_s=left_ms / 1000)

    def note(self, key: str, data: dict[str, Any], *, outbox: bool = False, resume: bool = False) -> None:
        check_key("key", key)
        args: list[str] = ["1" if outbox else "0", "1" if resume else "0"]
        for name, value in data.items():
            args += [_PROGRESS + name, json.dumps(value)]
        with self._redis() as client:
            # The indexes first: a crash in between leaves an entry take_outbox drops.
            if outbox or resume:
                (seconds, micros) = client.time()
                now_ms = seconds * 1000 + micros // 1000
            if outbox:
                client.zadd(self._outbox, {key: now_ms})
            if resume:
                client.zadd(self._resumable, {key: now_ms})
            noted = self._note(keys=[self._record(key)], args=args)
            if noted and resume:  # due when the claim lapses
                client.zadd(self._resumable, {key: int(noted)}, xx=True)
        if not noted:
            raise ClaimLost(f"no in-progress record of idempotency key {key!r} to note progress on")

    def take_outbox(self, *, older_than_s: float, in_progress_ttl_s: float, limit: int) -> list[Taken]:
        check_age("older_than_s", older_than_s)
        check_ttl("in_progress_ttl_s", in_progress_ttl_s)
        check_limit(limit)
        older_ms = round(older_than_s * 1000)
        taken: list[Taken] = []
        with self._redis() as client:
            (seconds, micros) = client.time()
            due = seconds * 1000 + micros // 1000 - older_ms
            keys = [str(key) for key in client.zrangebyscore(self._outbox, "-inf", due, start=0, num=limit)]
            for key in keys:
                reply = self._take(
                    keys=[self._record(key)], args=[older_ms, _ms(in_progress_ttl_s), self._keep_ms]
                )
                if reply[0] == "gone":
                    client.zrem(self._outbox, key)
                elif reply[0] == "later":  # taken by another caller since: its time, not ours
                    client.zadd(self._outbox, {key: int(reply[1])}, xx=True)
                else:
                    client.zadd(self._outbox, {key: int(reply[2])}, xx=True)
                    taken.append(Taken(key, _progress(reply[3]), int(reply[1])))
            if len(taken) < limit:
                taken += self._take_resumable(client, due + older_ms, limit - len(taken), in_progress_ttl_s)
        return taken

    def _take_resumable(
        self, client: redis.Redis, now_ms: int, limit: int, in_progress_ttl_s: float
    ) -> list[Taken]:
        """The resumable records whose claim has lapsed (``take_outbox``'s second half)."""
        taken: list[Taken] = []
        keys = [str(key) for key in client.zrangebyscore(self._resumable, "-inf", now_ms, start=0, num=limit)]
        for key in keys:
            reply = self._take_lapsed(keys=[self._record(key)], args=[_ms(in_progress_ttl_s), self._keep_ms])
            if reply[0] == "gone":
                client.zrem(self._resumable, key)
            elif reply[0] == "later":  # its claim was taken over or renewed: due when it lapses
                client.zadd(self._resumable, {key: int(reply[1])}, xx=True)
            else:
                client.zadd(self._resumable, {key: int(reply[2])}, xx=True)
                taken.append(Taken(key, _progress(reply[3]), int(reply[1])))
        return taken

    def complete(self, key: str, record: dict[str, Any], *, ttl_s: float, synced: bool = True) -> None:
        del synced  # Redis persists as its server is configured (appendfsync): no choice per write
        check_key("key", key)
        check_ttl("ttl_s", ttl_s)
        text = json.dumps(record)
        with self._redis() as client:
            completed = self._complete(keys=[self._record(key)], args=[text, _ms(ttl_s)])
            self._unindex(client, key, completed)
        if not completed:
            raise ClaimLost(f"no record of idempotency key {key!r} to complete")

    def release(self, key: str) -> None:
        check_key("key", key)
        with self._redis() as client:
            self._unindex(client, key, self._release(keys=[self._record(key)]))

    def _unindex(self, client: redis.Redis, key: str, found: int) -> None:
        """Drop ``key`` from the indexes ``found`` (bits of _COMPLETE/_RELEASE) says it was in."""
        if found & _IN_OUTBOX:
            client.zrem(self._outbox, key)
        if found & _RESUMABLE:
            client.zrem(self._resumable, key)

    def park(self, key: str, data: dict[str, Any]) -> None:
        check_key("key", key)
        args: list[str | int] = [self._keep_ms]
        for name, value in data.items():
            args += [_PROGRESS + name, json.dumps(value)]
        with self._redis() as client:
            parked = self._park(keys=[self._record(key)], args=args)
            if parked == 2:
                client.zrem(self._resumable, key)
        if not parked:
            raise ClaimLost(f"no in-progress record of idempotency key {key!r} to park")

    def peek(self, key: str) -> Claim | None:
        check_key("key", key)
        with self._redis():
            reply = self._peek(keys=[self._record(key)])
        if not reply:
            return None
        if reply[0] == "done":
            return Claim(ClaimState.DONE, record=json.loads(reply[1]))
        attempt, left_ms, flat = int(reply[1]), int(reply[2]), reply[3]
        return Claim(
            ClaimState.IN_PROGRESS, progress=_progress(flat), attempt=attempt, expires_in_s=left_ms / 1000
        )

    def acquire(self, name: str, owner: str, *, ttl_s: float) -> bool:
        check_key("lock name", name)
        check_key("owner", owner)
        check_ttl("ttl_s", ttl_s)
        with self._redis():
            return bool(self._acquire(keys=[self._lock(name)], args=[owner, _ms(ttl_s)]))

    def acquire_all(
        self,
        names: Sequence[str],
        owner: str,
        *,
        ttl_s: float,
        slots: Iterable[str] | None = None,
        slot_ttl_s: float = 0.0,
    ) -> Acquired:
        check_acquire_all(names, owner, ttl_s, slots, slot_ttl_s)
        taken: list[str] = []
        for name in names:
            if not self.acquire(name, owner, ttl_s=ttl_s):
                self._give_back(taken, owner)
                return Acquired.LOCKED
            taken.append(name)
        if slots is None or any(self.acquire(slot, owner, ttl_s=slot_ttl_s) for slot in slots):
            return Acquired.TAKEN
        self._give_back(taken, owner)
        return Acquired.NO_SLOT

    def _give_back(self, names: list[str], owner: str) -> None:
        for name in names:
            self.release_lock(name, owner)

    def release_lock(self, name: str, owner: str) -> bool:
        check_key("lock name", name)
        check_key("owner", owner)
        with self._redis():
            return bool(self._release_lock(keys=[self._lock(name)], args=[owner]))

    def holder(self, name: str) -> str | None:
        check_key("lock name", name)
        with self._redis() as client:
            owner = client.get(self._lock(name))
        return None if owner is None else str(owner)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

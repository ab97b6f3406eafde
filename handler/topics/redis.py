"""Topics on Redis Streams (Redis 6.2 or later, Huawei DCS included).

URL: ``redis://[[user]:password@]host[:port][/db][?topic=NAME]``, ``rediss://`` for TLS
(``&ca=/path/ca.pem`` adds a CA bundle, e.g. the one DCS offers for download).

Keys of topic ``jobs``: the stream ``ecs-detach:{jobs}``, the sorted set of delayed messages
``ecs-detach:{jobs}:delayed`` and the stream of topic ``jobs.dead``, ``ecs-detach:{jobs}.dead``.
The hash tag puts them in one cluster slot, so the Lua scripts below can move a message between
them atomically (Redis Cluster and DCS proxy clusters need that).

* One stream entry is one message: fields ``id`` (stable across requeues), ``body``,
  ``failures`` (failed deliveries before this entry) and ``reason`` (of the last failure).
  Settling a message XACKs and XDELs its entry, so the stream holds exactly the unsettled ones.
* Consumers share the group ``ecs-detach``; each instance reads as its own consumer. A receive
  runs one script that moves due delayed messages into the stream, XAUTOCLAIMs entries idle for
  longer than the visibility timeout (a consumer died or was too slow) and XREADGROUPs new ones;
  only if that finds nothing does it block in XREADGROUP, at most 1 s or until the next delayed
  message is due, so expired leases and delayed messages published meanwhile wait that long.
* Deliveries = ``failures`` + the entry's own delivery count (XPENDING). The receipt names the
  entry, the consumer and that count; a settling script first checks with XPENDING that the
  entry is still pending for that consumer with that count and idle for less than the visibility
  timeout, else it raises ``StaleDelivery`` (a reclaim by anyone, even by the same consumer,
  raises the count).
* ``nack``, ``requeue`` and ``dead_letter`` each run one script: check the lease, remove the
  entry, add its successor (to the stream, or to the delayed set if it has a delay). Times come
  from Redis (``TIME``), not from the clients' clocks. ``nack`` of the last allowed delivery
  and a reclaim of an entry past ``max_deliveries`` write it to the dead-letter stream, with the
  body, the count and the reason.
* ``browse`` reads the stream with plain XREAD (no group, nothing leased or acked): the
  entries still there, then, from a thread kept blocked in XREAD, each one as it is added,
  even if the group settles it at once.
* Reconnects are redis-py's: a dropped connection is replaced on the next command (three
  retries, 50 ms to 1 s apart). A settling script whose reply was lost in a drop is retried
  and then reports a stale lease although it did its work. A group lost with the data (a
  restart of a Redis without persistence, which loses the messages too) is created again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ._base import Browsed, Delivery, TopicConfigError, TopicError
from ._common import (
    BrokerTopic,
    broker_error,
    check_receive,
    check_seconds,
    is_dead_letter_topic,
    no_dead_letter_topic,
    stale,
)

T = TypeVar("T")

GROUP = "ecs-detach"
_MAX_BLOCK = 1.0  # s one blocking read lasts at most before the scripts run again
_SOCKET_TIMEOUT = 5.0 + _MAX_BLOCK
_USAGE = "use redis[s]://[[user]:password@]host[:port][/db][?topic=NAME][&ca=/path/ca.pem]"
_LEASE_EXPIRED = "not settled within the visibility timeout"

_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fields(flat)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end
local function add(key, id, body, failures, reason)
  redis.call('XADD', key, '*', 'id', id, 'body', body, 'failures', failures, 'reason', reason)
end
local function schedule(stream, delayed, id, body, failures, reason, delay_ms)
  if delay_ms > 0 then
    redis.call('ZADD', delayed, now_ms() + delay_ms, cjson.encode({id, body, tostring(failures), reason}))
  else
    add(stream, id, body, failures, reason)
  end
end
"""

# KEYS stream, delayed; ARGV id, body, delay_ms
_PUBLISH = _LIB + "schedule(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 0, '', tonumber(ARGV[3]))"

# KEYS stream, delayed[, dead]; ARGV group, consumer, count, min_idle_ms, max_deliveries (0: no
# dead letters), autoclaim cursor, reason for exhausted leases.
# Returns {next cursor, {{entry id, id, body, deliveries, entry delivery count}...}, ms until the
# next delayed message is due or -1}.
_RECEIVE = (
    _LIB
    + """
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_deliveries = tonumber(ARGV[5])
local now = now_ms()
for _, member in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)) do
  local m = cjson.decode(member)
  add(stream, m[1], m[2], m[3], m[4])
  redis.call('ZREM', delayed, member)
end
local out = {}
local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], ARGV[6], 'COUNT', count)
for _, entry in ipairs(claimed[2]) do
  if not entry[2] then
    redis.call('XACK', stream, group, entry[1])
  else
    local f = fields(entry[2])
    local times = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)[1][4]
    local deliveries = tonumber(f.failures) + times
    if max_deliveries > 0 and deliveries > max_deliveries then
      add(dead, f.id, f.body, deliveries - 1, ARGV[7])
      redis.call('XACK', stream, group, entry[1])
      redis.call('XDEL', stream, entry[1])
    else
      out[#out + 1] = {entry[1], f.id, f.body, deliveries, times}
    end
  end
end
if #out < count then
  local fresh = redis.call(
    'XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out, 'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do
      local f = fields(entry[2])
      out[#out + 1] = {entry[1], f.id, f.body, tonumber(f.failures) + 1, 1}
    end
  end
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local next_due = -1
if first[2] then next_due = math.max(tonumber(first[2]) - now, 0) end
return {claimed[1], out, next_due}
"""
)

# KEYS stream, delayed[, dead]; ARGV group, entry id, consumer, entry delivery count,
# visibility_ms, operation, body or reason, delay_ms, max_deliveries. Returns 1, or 0 if stale.
_SETTLE = (
    _LIB
    + """
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, entry_id = ARGV[1], ARGV[2]
local lease = redis.call('XPENDING', stream, group, entry_id, entry_id, 1)[1]
if not lease or lease[2] ~= ARGV[3] or tostring(lease[4]) ~= ARGV[4] or lease[3] >= tonumber(ARGV[5]) then
  return 0
end
local entry = redis.call('XRANGE', stream, entry_id, entry_id)[1]
redis.call('XACK', stream, group, entry_id)
redis.call('XDEL', stream, entry_id)
if not entry then return 0 end
local f = fields(entry[2])
local op, text, delay_ms, max_deliveries = ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local deliveries = tonumber(f.failures) + lease[4]
if op == 'nack' then
  local reason = text ~= '' and text or f.reason
  if max_deliveries > 0 and deliveries >= max_deliveries then
    add(dead, f.id, f.body, deliveries, reason)
  else
    schedule(stream, delayed, f.id, f.body, deliveries, reason, delay_ms)
  end
elseif op == 'requeue' then
  schedule(stream, delayed, f.id, text, 0, '', delay_ms)
elseif op == 'dead' then
  add(dead, f.id, f.body, deliveries, text)
end
return 1
"""
)

# KEYS stream; ARGV group, consumer. Forgets the consumer unless it still holds entries.
_FORGET = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


def _key(name: str) -> str:
    """The stream of topic ``name``; ``{base}`` is the hash tag shared with its dead letters."""
    if is_dead_letter_topic(name):
        return "ecs-detach:{" + name.removesuffix(".dead") + "}.dead"
    return "ecs-detach:{" + name + "}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class RedisTopic(BrokerTopic):
    """One topic on Redis Streams; safe to share between threads (redis-py pools connections)."""

    KIND = "redis"
    PORT = 6379
    TLS_SCHEME = "rediss"
    USAGE = _USAGE

    def _start(self) -> None:
        name, address, ca_file = self._name, self._address, self._ca_file
        if not address.path.isdigit() and address.path:
            raise TopicConfigError(f"redis topic URL {address.safe_url}: the path must be a database number")
        self._stream = _key(name)
        self._delayed = self._stream + ":delayed"
        self._dead = None if is_dead_letter_topic(name) else _key(name + ".dead")
        self._consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._cursor = "0-0"
        self._client: redis.Redis | None = redis.Redis(
            host=address.host,
            port=address.port,
            db=int(address.path or 0),
            username=address.username,
            password=address.password,
            ssl=address.scheme == "rediss",
            ssl_ca_certs=ca_file,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=5.0,
            health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
            client_name="ecs-detach",
            decode_responses=True,
        )
        self._publish = self._client.register_script(_PUBLISH)
        self._receive = self._client.register_script(_RECEIVE)
        self._settle_script = self._client.register_script(_SETTLE)
        self._forget = self._client.register_script(_FORGET)
        try:
            self._create_group()
        except TopicError:
            self._client.close()
            raise

    @contextmanager
    def _redis(self) -> Iterator[redis.Redis]:
        """The client, with Redis errors turned into ``TopicError`` (redacted)."""
        if self._client is None:
            raise TopicError(f"topic {self._name!r} at {self._address.safe_url} is closed")
        try:
            yield self._client
        except redis.RedisError as exc:
            raise broker_error("redis", self._name, self._address, exc)  # noqa: B904 (cause set there)

    def _keys(self) -> list[str]:
        return [self._stream, self._delayed] + ([self._dead] if self._dead else [])

    def _create_group(self) -> None:
        with self._redis() as client:
            try:
                client.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _with_group(self, call: Callable[[], T]) -> T:
        """``call()``, once more after creating the group if Redis lost it (NOGROUP)."""
        try:
            with self._redis():
                return call()
        except TopicError as exc:
            if "NOGROUP" not in str(exc):
                raise
        self._create_group()
        with self._redis():
            return call()

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        """Add ``body`` to the stream, or to the delayed set until ``delay`` s have passed."""
        check_seconds("delay", delay)
        message_id = uuid.uuid4().hex
        with self._redis():
            self._publish(keys=[self._stream, self._delayed], args=[message_id, body, _ms(delay)])
        return message_id

    def receive(self, max_messages: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages``: reclaimed expired leases first, then new entries."""
        check_receive(max_messages, wait)
        deadline = time.monotonic() + wait
        while True:
            deliveries, next_due_ms = self._with_group(partial(self._claim_and_read, max_messages))
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            block = min(remaining, _MAX_BLOCK)
            if next_due_ms >= 0:
                block = min(block, next_due_ms / 1000)
            deliveries = self._with_group(partial(self._read_blocking, max_messages, block))
            if deliveries:
                return deliveries

    def _claim_and_read(self, max_messages: int) -> tuple[list[Delivery], int]:
        args: list[str | int] = [
            GROUP,
            self._consumer,
            max_messages,
            _ms(self._visibility_timeout),
            0 if self._dead is None else self._max_deliveries,
            self._cursor,
            _LEASE_EXPIRED,
        ]
        cursor, entries, next_due_ms = self._receive(keys=self._keys(), args=args)
        self._cursor = cursor
        deliveries = [self._delivery(entry_id, fields, count) for entry_id, *fields, count in entries]
        return deliveries, int(next_due_ms)

    def _read_blocking(self, max_messages: int, block: float) -> list[Delivery]:
        assert self._client is not None
        streams: Any = self._client.xreadgroup(
            GROUP, self._consumer, {self._stream: ">"}, count=max_messages, block=max(1, _ms(block))
        )
        return [
            self._delivery(entry_id, [f["id"], f["body"], int(f["failures"]) + 1], 1)
            for _, entries in streams or []
            for entry_id, f in entries
        ]

    def _delivery(self, entry_id: str, fields: list[Any], count: int) -> Delivery:
        message_id, body, deliveries = fields
        return Delivery(str(message_id), str(body), int(deliveries), f"{entry_id} {self._consumer} {count}")

    def _settle(self, delivery: Delivery, operation: str, text: str = "", delay: float = 0.0) -> None:
        try:
            entry_id, consumer, count = delivery.receipt.split(" ")
        except ValueError:
            raise stale(self._name, delivery.message_id) from None
        args: list[str | int] = [
            GROUP,
            entry_id,
            consumer,
            count,
            _ms(self._visibility_timeout),
            operation,
            text,
            _ms(delay),
            0 if self._dead is None else self._max_deliveries,
        ]
        try:
            with self._redis():
                settled = self._settle_script(keys=self._keys(), args=args)
        except TopicError as exc:
            if "NOGROUP" not in str(exc):
                raise
            settled = 0
        if not settled:
            raise stale(self._name, delivery.message_id)

    def ack(self, delivery: Delivery) -> None:
        """Remove the message; raises ``StaleDelivery`` unless the lease is still ours."""
        self._settle(delivery, "ack")

    def nack(self, delivery: Delivery, *, delay: float = 0.0, reason: str = "") -> None:
        """Deliver again after ``delay`` s, counting this failure (the last one dead-letters)."""
        check_seconds("delay", delay)
        self._settle(delivery, "nack", reason, delay)

    def requeue(self, delivery: Delivery, body: str, *, delay: float) -> None:
        """Atomically replace the message by ``body``, due after ``delay`` s, count restarted."""
        check_seconds("delay", delay)
        self._settle(delivery, "requeue", body, delay)

    def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """Move the message to ``{name}.dead`` now, body unchanged, with ``reason``."""
        if self._dead is None:
            raise no_dead_letter_topic(self._name)
        self._settle(delivery, "dead", reason)

    def pending(self) -> int:
        """Entries in the stream (leased or not) plus delayed messages."""
        with self._redis() as client:
            pipe = client.pipeline(transaction=False)
            pipe.xlen(self._stream)
            pipe.zcard(self._delayed)
            in_stream, delayed = pipe.execute()
        return int(in_stream) + int(delayed)

    def browse(self, *, since: float | None = None) -> _RedisBrowser:
        """Read the stream with XREAD, outside the consumer group (see ``Browsable``)."""
        return _RedisBrowser(self, "0-0" if since is None else f"{max(_ms(since) - 1, 0)}-{2**64 - 1}")

    def _read_after(self, entry_id: str, block: float | None) -> list[tuple[str, dict[str, str]]]:
        with self._redis() as client:
            block_ms = None if block is None else max(1, _ms(block))
            streams: Any = client.xread({self._stream: entry_id}, count=500, block=block_ms)
        return [(entry, fields) for _, entries in streams or [] for entry, fields in entries]

    def dead_letter_topic(self) -> RedisTopic:
        """The ``{name}.dead`` topic on the same Redis, as a new instance the caller closes."""
        if self._dead is None:
            raise ValueError(f"{self._name!r} is a dead-letter topic and has none of its own")
        return RedisTopic(
            self._address,
            self._name + ".dead",
            ca_file=self._ca_file,
            visibility_timeout=self._visibility_timeout,
            max_deliveries=self._max_deliveries,
        )

    def close(self) -> None:
        """Forget this consumer in the group if it holds nothing, and close the connections."""
        client, self._client = self._client, None
        if client is None:
            return
        # If the broker is gone, the consumer name stays behind in the group, holding nothing.
        with contextlib.suppress(redis.RedisError):
            self._forget(keys=[self._stream], args=[GROUP, self._consumer], client=client)
        client.close()


class _RedisBrowser:
    """A thread kept in a blocking XREAD after the last entry seen, so an entry the group settles
    at once is still seen: Redis serves blocked readers as the entry is added. A nacked message
    comes back as a new entry with the same ``id`` field: shown once (the last 10 000 ids kept)."""

    def __init__(self, topic: RedisTopic, after: str) -> None:
        self._topic = topic
        self._after = after
        self._seen: dict[str, None] = {}
        self._found: queue.Queue[Browsed | TopicError] = queue.Queue()
        self._stop = threading.Event()
        self._read()  # what is there now, before next() returns anything
        self._thread = threading.Thread(target=self._follow, name=f"browse-{topic.name}", daemon=True)
        self._thread.start()

    def _read(self, block: float | None = None) -> None:
        for entry_id, fields in self._topic._read_after(self._after, block):
            self._after = entry_id
            message_id = fields.get("id", entry_id)
            if message_id not in self._seen:
                self._seen[message_id] = None
                at = int(entry_id.split("-")[0]) / 1000
                self._found.put(Browsed(message_id, fields.get("body", ""), at))
        while len(self._seen) > 10_000:
            del self._seen[next(iter(self._seen))]

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._read(block=_MAX_BLOCK)
            except TopicError as error:
                self._found.put(error)
                return

    def next(self, wait: float = 0.0) -> list[Browsed]:
        check_seconds("wait", wait)
        found: list[Browsed] = []
        with contextlib.suppress(queue.Empty):
            found.append(self._item(self._found.get(timeout=wait) if wait > 0 else self._found.get_nowait()))
            while True:
                found.append(self._item(self._found.get_nowait()))
        return found

    def _item(self, item: Browsed | TopicError) -> Browsed:
        if isinstance(item, TopicError):
            raise item
        return item

    def close(self) -> None:
        """Stop the reading thread (within one blocking read, at most ``_MAX_BLOCK`` s)."""
        self._stop.set()
        self._thread.join(_MAX_BLOCK + _SOCKET_TIMEOUT)

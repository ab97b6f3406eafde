"""One asyncio event loop per process, in a daemon thread, for the asyncio-only broker clients.

The topic interface is synchronous; the NATS and RabbitMQ backends submit coroutines here with
``run`` and block the calling thread until they finish. All their broker state lives on this
loop, so it is touched by one thread only. A forked child gets a loop of its own on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_owner_pid = 0


def _shared_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread, _owner_pid
    with _lock:
        if _loop is None or _owner_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="ecs-detach-topics", daemon=True)
            thread.start()
            _loop, _thread, _owner_pid = loop, thread, os.getpid()
        return _loop


def run(coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coroutine`` on the shared loop and return its result.

    After ``timeout`` s the coroutine is cancelled and ``TimeoutError`` raised.
    """
    loop = _shared_loop()
    if threading.current_thread() is _thread:
        coroutine.close()
        raise RuntimeError("a topic was called from its own event loop thread")
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():  # the coroutine itself timed out
            raise
        future.cancel()
        raise TimeoutError(f"no answer within {timeout:g} s") from None

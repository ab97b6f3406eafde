"""SMN's HTTP(S) push: each message is POSTed to its subscriber on a daemon thread, retried with
a doubling backoff a bounded number of times (``DeliveryPolicy``); every attempt is logged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable

import httpx

from emulator.models import iso_ms
from emulator.smn_models import DeliveryAttempt, PushMessage, SmnBackend

CONTENT_TYPE = "application/json; charset=UTF-8"


class Pusher:
    """Delivers messages for one backend, which holds the policy and the attempt log."""

    def __init__(self, backend: SmnBackend) -> None:
        self._backend = backend

    def push(self, messages: Iterable[PushMessage]) -> None:
        """Start delivering each message in the background."""
        for message in messages:
            threading.Thread(target=self._deliver, args=(message,), name="smn-push", daemon=True).start()

    def _deliver(self, message: PushMessage) -> None:
        policy = self._backend.policy
        content = json.dumps(message.body(), ensure_ascii=False).encode("utf-8")
        headers = {**message.headers(), "Content-Type": CONTENT_TYPE}
        delay = policy.backoff_s
        for attempt in range(1, policy.attempts + 1):
            status_code, error = None, None
            try:
                response = httpx.post(
                    message.endpoint, content=content, headers=headers, timeout=policy.timeout_s
                )
                status_code = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._backend.record_attempt(
                DeliveryAttempt(
                    message_id=message.message_id,
                    type=message.type,
                    subscription_urn=message.subscription_urn,
                    endpoint=message.endpoint,
                    attempt=attempt,
                    time=iso_ms(self._backend.now()),
                    status_code=status_code,
                    error=error,
                )
            )
            if status_code is not None and 200 <= status_code < 300:
                return
            if attempt < policy.attempts:
                time.sleep(delay)
                delay = min(delay * 2, policy.max_backoff_s)

"""The outbox relay: every accepted detach gets its ``ecs-detach.accepted`` event published.

The detach function notes the job id (with the request) in the key's record, which enters the
store's outbox, *before* it publishes the event; completing the key takes it out again. When
the publish fails the request is answered 503 and its record parked, and the sender's retry
(or the queue's next delivery) publishes. The relay covers the rest: a sender that never
retries, or an instance killed between the note and the publish. It sweeps the outbox for
records waiting there at least ``older_than_s`` and publishes each one's event
(``DetachFunction.relay``), so publishing never is impossible while the store lives.

The age is a trade-off. A record is taken over even while its owner's claim holds (the claim
lasts the function timeout, 60 s by default, and a dead owner's would block its job that long),
so an owner that is merely slow to publish (a broker answering after its timeout) may see its
event published a second time by the relay. That is harmless: the poll function claims each
job's result once (``Guard.claim_result``), so a second event for one job ends in no second
result. The default age (``ECS_DETACH_RELAY_AFTER_S``, 20 s) is longer than a publish normally
takes, including a broker's own retries, and much shorter than the claim.

Two relays do not race for a record: taking it claims it, and it is due again only
``older_than_s`` later (when this relay died or its publish failed).

The relay also resumes requests whose owner died before noting a job: the detach function
notes each request (resumable) when it claims its key, so a record whose claim lapsed without
a job is taken too, though only then (its owner might still be making the detach call). Such a
request runs again from its checks (``DetachFunction.relay``): when the dead owner's detach
call went through, they find the disk detaching or gone and report that (one result); else the
detach is made now. Without this, a sender that never retries, cut off by a crash between the
detach call and the note of its job, would leave a detached disk with no result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from handler.core.outcomes import DetachStatus
from handler.functions.detach import DetachFunction
from handler.support.log import log_event

RELAY_BATCH = 50  # records taken per store call


@dataclass(frozen=True)
class RelayReport:
    """What one sweep did: records ``published``, records whose request was resumed and
    ``ended`` otherwise (a result reported, or waiting again: queued, for an approval), and
    those that ``failed`` (not now: they stay for a later sweep)."""

    published: int = 0
    failed: int = 0
    ended: int = 0


class Relay:
    def __init__(
        self,
        detach: DetachFunction,
        *,
        older_than_s: float,
        batch: int = RELAY_BATCH,
    ) -> None:
        self._detach = detach
        self._guard = detach.guard
        self._older_than_s = older_than_s
        self._batch = batch

    def sweep(self) -> RelayReport:
        """Publish the events of every record due in the outbox now; raises what the store
        raises (nothing is lost: the records stay where they are)."""
        published = failed = ended = 0
        while True:
            taken = self._guard.take_outbox(older_than_s=self._older_than_s, limit=self._batch)
            for record in taken:
                log_event("relay.taken", idempotency_key=record.key, job_id=record.progress.get("job_id"))
                outcome = self._detach.relay(record)
                if outcome.status is DetachStatus.ACCEPTED:
                    published += 1
                elif outcome.status is DetachStatus.RETRY:
                    failed += 1
                else:
                    ended += 1
            if len(taken) < self._batch or failed:  # the outbox is empty, or a topic or the cloud is down
                break
        if published or failed or ended:
            level = logging.WARNING if failed else logging.INFO
            log_event("relay.swept", level=level, published=published, failed=failed, ended=ended)
        return RelayReport(published, failed, ended)

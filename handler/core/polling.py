"""When to look at a job again: a pure function of the attempt and the job's age.

Polls come at geometrically growing intervals: the gap is ``factor`` × the job's age, kept
within [``min_delay_s``, ``max_delay_s``]. With the defaults a job is seen finished within
max(1 s, 15 % of its duration) of its end (20 s at most, past 133 s): prompt enough for the
next step of a workflow, at a number of calls that grows with the logarithm of the duration
up to the cap, then linearly at one call per 20 s.

The price of the promise is calls: no schedule that does not know a job's duration can bound
the lateness by a fraction of it with fewer calls (to be at most 15 % late for every duration
it must look at least every 15 % of the age), so a fixed 10 s interval makes fewer calls for
jobs of 10 to about 300 s and answers up to 10 s late. ``ECS_DETACH_POLL_FACTOR`` moves along
that trade-off: 0.5 roughly halves the calls and allows 50 % lateness (docs/performance.md).
"""

from __future__ import annotations

from typing import Final


# A plain class, not a frozen dataclass: it is made at import on a cold start, where a
# dataclass costs about 0.75 ms to create. Its fields are Final (set once, as frozen fields
# were); nothing compares or prints a schedule, so it has no __eq__ or __repr__.
class PollSchedule:
    __slots__ = ("factor", "first_delay_s", "max_delay_s", "min_delay_s", "settle_delay_s")

    def __init__(
        self,
        first_delay_s: float = 2.0,
        factor: float = 0.15,
        min_delay_s: float = 1.0,
        max_delay_s: float = 20.0,
        settle_delay_s: float = 1.0,  # after SUCCESS while the volume still shows as attached
    ) -> None:
        if not 0 < min_delay_s <= max_delay_s:
            raise ValueError("poll delays need 0 < min_delay_s <= max_delay_s")
        if first_delay_s < 0 or factor < 0 or settle_delay_s <= 0:
            raise ValueError("poll delays and factor must not be negative")
        self.first_delay_s: Final = first_delay_s
        self.factor: Final = factor
        self.min_delay_s: Final = min_delay_s
        self.max_delay_s: Final = max_delay_s
        self.settle_delay_s: Final = settle_delay_s

    def next_delay(self, attempt: int, job_age_s: float) -> float:
        """Seconds to wait before poll number ``attempt + 1`` (``attempt`` polls made so far)."""
        if attempt == 0:
            return self.first_delay_s
        return min(self.max_delay_s, max(self.min_delay_s, self.factor * job_age_s))

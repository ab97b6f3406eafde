"""When to look at a job again: a pure function of the attempt and the job's age.

Polls come at geometrically growing intervals: the gap is ``factor`` × the job's age, kept
within [``min_delay_s``, ``max_delay_s``]. A short job is seen finished within about
``factor`` of its duration; a long one costs a number of calls that grows with the logarithm
of its duration, not linearly as with a fixed interval.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PollSchedule:
    first_delay_s: float = 2.0
    factor: float = 0.5
    min_delay_s: float = 1.0
    max_delay_s: float = 20.0
    settle_delay_s: float = 1.0  # after SUCCESS while the volume still shows as attached

    def __post_init__(self) -> None:
        if not 0 < self.min_delay_s <= self.max_delay_s:
            raise ValueError("poll delays need 0 < min_delay_s <= max_delay_s")
        if self.first_delay_s < 0 or self.factor < 0 or self.settle_delay_s <= 0:
            raise ValueError("poll delays and factor must not be negative")

    def next_delay(self, attempt: int, job_age_s: float) -> float:
        """Seconds to wait before poll number ``attempt + 1`` (``attempt`` polls made so far)."""
        if attempt == 0:
            return self.first_delay_s
        return min(self.max_delay_s, max(self.min_delay_s, self.factor * job_age_s))

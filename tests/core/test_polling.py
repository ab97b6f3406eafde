"""The poll schedule: prompt for short jobs, few calls for long ones, bounded."""

from __future__ import annotations

import pytest

from handler.core.polling import PollSchedule


def _poll_times(schedule: PollSchedule, job_s: float) -> list[float]:
    """When polls happen until one sees a job that ends at ``job_s``."""
    t, attempt, times = 0.0, 0, []
    while True:
        t += schedule.next_delay(attempt, t)
        attempt += 1
        times.append(t)
        if t >= job_s:
            return times


def test_first_poll_uses_the_first_delay() -> None:
    assert PollSchedule(first_delay_s=2.5).next_delay(0, 0.0) == 2.5


def test_delays_grow_with_age_within_bounds() -> None:
    schedule = PollSchedule(first_delay_s=2, factor=0.5, min_delay_s=1, max_delay_s=20)
    assert schedule.next_delay(3, 1.0) == 1.0
    assert schedule.next_delay(3, 20.0) == 10.0
    assert schedule.next_delay(9, 600.0) == 20.0


@pytest.mark.parametrize("job_s", [0.5, 3.0, 7.3, 10.0, 30.0, 61.0, 120.0, 600.0])
def test_a_finished_job_is_seen_within_15_percent_of_its_age_a_second_or_the_cap(job_s: float) -> None:
    schedule = PollSchedule()
    times = _poll_times(schedule, job_s)
    late = times[-1] - job_s
    if job_s >= schedule.first_delay_s:
        assert late <= min(schedule.max_delay_s, max(1.0, 0.15 * job_s)) + 1e-9
    else:  # ended before the first look
        assert times == [schedule.first_delay_s]


def test_a_three_second_job_is_seen_within_a_second_and_a_half() -> None:
    assert _poll_times(PollSchedule(), 3.0)[-1] - 3.0 <= 1.5


def test_long_jobs_cost_fewer_calls_than_a_fixed_ten_second_interval() -> None:
    for job_s in (600.0, 1800.0):
        assert len(_poll_times(PollSchedule(), job_s)) < job_s / 10 + 1


@pytest.mark.parametrize(
    "kwargs",
    [{"min_delay_s": 0}, {"min_delay_s": 5, "max_delay_s": 1}, {"factor": -1}, {"settle_delay_s": 0}],
)
def test_nonsense_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="poll delays"):
        PollSchedule(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_delay_s": 5.0, "max_delay_s": 5.0},  # a fixed interval
        {"first_delay_s": 0.0},  # look at once
        {"factor": 0.0},  # always the minimum
    ],
)
def test_the_edges_of_a_sensible_schedule_are_accepted(kwargs: dict[str, float]) -> None:
    schedule = PollSchedule(**kwargs)
    assert schedule.next_delay(1, 100.0) >= schedule.min_delay_s

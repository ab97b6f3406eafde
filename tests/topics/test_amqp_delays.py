"""RabbitMQ delay queues: how a delay picks its queue (no broker needed)."""

from __future__ import annotations

import pytest

from handler.topics.amqp import delay_bucket_ms


@pytest.mark.parametrize(
    ("delay", "ms"),
    [
        (0, 0),
        (0.0004, 1),
        (0.1, 100),
        (0.3, 300),
        (1.234, 1300),
        (2.5, 2500),
        (37.3, 38000),
        (60, 60000),
        (99.99, 100000),
        (3600.5, 3700000),
    ],
)
def test_a_delay_rounds_up_to_two_significant_digits(delay: float, ms: int) -> None:
    assert delay_bucket_ms(delay) == ms
    assert ms >= delay * 1000  # never early
    assert ms <= max(delay * 1000 * 1.1, 1)  # at most 10 % late


def test_a_delay_longer_than_a_queue_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="at most"):
        delay_bucket_ms(50 * 86400)

"""Store-backed guards the functions use: exactly-once idempotency with per-server and
per-volume locks (``idempotency``), and the blast radius with its circuit breaker (``blast``).

Each guard keeps its state in a ``handler.store.Store`` so every instance of the functions
shares it; in-process tests and one-off tools pass an in-memory SQLite store explicitly."""

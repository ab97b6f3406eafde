"""Infrastructure every layer may use: structured logging with secret masking (``log``), the
SQLite helpers shared by the store and the topic (``sqlite``), lazy module names (``lazy``)."""

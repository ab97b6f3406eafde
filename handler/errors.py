"""The exceptions ecs-detach defines: one tree, rooted at ``EcsDetachError``.

::

    EcsDetachError                     handler/core/errors.py (core imports nothing outside core)
    ├── ConfigError (ValueError)       a setting, URL or argument that cannot work; names it
    │   ├── TopicConfigError           a topic URL that cannot be used (also a TopicError)
    │   └── PasswordHashError          handler/security/_passwords.py: a console user's hash
    ├── InvalidInput (ValueError)      handler/core/validation.py: not a detach request
    │   └── MappingError               handler/sources/tickets.py: a ticket mapping is unusable
    ├── CloudError                     handler/cloud: a cloud call failed
    │   ├── ApiError                   the API answered with an error status
    │   └── TransportError             no usable answer (refused, DNS, TLS, timeout)
    ├── TopicError                     handler/topics: a topic is unavailable or misused
    │   ├── StaleDelivery              a lease expired before the settle
    │   └── TopicConfigError           (see ConfigError)
    ├── StoreError                     handler/store: the store is unavailable, corrupt or closed
    │   └── ClaimLost                  an idempotency claim is gone
    ├── Unauthenticated                handler/security: a webhook request is refused
    ├── CertificateFetchError          handler/security/smn_signature.py
    ├── ConfirmationFailed             handler/entry/_smn.py: SMN refused a confirmation
    ├── RetryLater                     handler/entry/functiongraph.py: let the platform redeliver
    └── PackageError (RuntimeError)    handler/local/package.py

Where a class also derives from a built-in (``ValueError``, ``RuntimeError``), callers that catch
the built-in keep working. Every message is safe to show: no credential, URLs redacted
(``handler.support.log.redact_url``). Anything else that escapes ``handler`` is a bug; the CLI
maps this tree to exit codes (``handler/local/cli.py``) and shows a traceback for the rest. The
emulator is a separate program and keeps its own errors.
"""

from __future__ import annotations

from handler.core.errors import EcsDetachError

__all__ = ["ConfigError", "EcsDetachError"]


class ConfigError(EcsDetachError, ValueError):
    """The configuration cannot work; the message says which setting to change."""

"""Typed configuration from the environment (``handler/support/env_settings.py``).

``ECS_DETACH_*`` configures the functions; cloud credentials use the official SDKs' names
(``HUAWEICLOUD_SDK_AK``, ``HUAWEICLOUD_SDK_SK``, ``HUAWEICLOUD_SDK_PROJECT_ID``,
``HUAWEICLOUD_SDK_SECURITY_TOKEN``). The README's configuration table mirrors these files.

Two classes read ``ECS_DETACH_*``:

* ``FunctionSettings`` (``_functions.py``): what the functions themselves need: the cloud, the
  topics, the store, the history, the safety and approval policies.
* ``Settings`` (``_edges.py``), a subclass: also what the edges need: the webhook routes and
  their authentication, notifications, chat buttons, the console and the HTTP server of ``up``.

A FunctionGraph cold start reads ``FunctionSettings`` only; the rest is read when a webhook,
notify or chat event first needs it (``Runtime.full_settings``), so 28 fields, their nested
models and the modules that define those stay off the cold path (docs/performance.md).
``Settings`` loads on first use for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handler.settings._functions import CloudCredentials, FunctionSettings
from handler.support.lazy import lazy_names

if TYPE_CHECKING:
    from handler.settings._edges import Settings

__getattr__ = lazy_names(__name__, {"Settings": "_edges"})

__all__ = [
    "CloudCredentials",
    "FunctionSettings",
    "Settings",
]

"""Grafana alerting webhook contact point (unified alerting, payload ``version`` "1").

The payload extends Alertmanager's, so IDs come from labels exactly as there (``LabelNames``);
``values`` (the query results) are never read as IDs, only copied into ``origin`` when small.
Legacy (pre-8) Grafana alerting payloads carry no ``version`` and are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from handler.core.validation import load_object
from handler.sources._base import Parsed
from handler.sources._labels import LabelNames
from handler.sources.alertmanager import DEFAULT_LABELS, alert_records

MAX_VALUES_CHARS = 256


def parse_grafana(raw: str | bytes | dict[str, Any], names: LabelNames = DEFAULT_LABELS) -> Parsed:
    """One Record per alert; ``idempotency_key`` is ``grafana:{fingerprint}:{startsAt}``."""
    body = load_object(raw)
    org = body.get("orgId")

    def extra_origin(alert: Mapping[str, Any]) -> dict[str, str]:
        origin = {"orgId": str(org)} if isinstance(org, int) and not isinstance(org, bool) else {}
        values = alert.get("values")
        if isinstance(values, dict) and values:
            text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
            if len(text) <= MAX_VALUES_CHARS:
                origin["values"] = text
        return origin

    return alert_records(body, source="grafana", version="1", names=names, extra_origin=extra_origin)

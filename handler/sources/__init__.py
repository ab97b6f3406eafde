"""Event sources: each adapter turns a raw event into Records (a request, a precise error, or a skip).

Adapters other than ``plain`` load on first use, so a FunctionGraph cold start that needs none
of them skips importing them (the ``cloudevents`` library alone takes about 20 ms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handler.sources._base import Parsed, Record
from handler.sources.plain import parse_job_event, parse_message, parse_plain, parse_request
from handler.support.lazy import lazy_names

if TYPE_CHECKING:
    from handler.sources._labels import LabelNames
    from handler.sources.alertmanager import parse_alertmanager
    from handler.sources.cloudevents_http import parse_cloudevent_http
    from handler.sources.cloudeye import parse_smn_http, parse_smn_trigger
    from handler.sources.grafana import parse_grafana
    from handler.sources.tickets import MappingError, TicketMapping, load_mappings, parse_ticket
    from handler.sources.triggers import ApigRequest, apig_response, detect_trigger

_LAZY = {
    "LabelNames": "_labels",
    "parse_alertmanager": "alertmanager",
    "parse_grafana": "grafana",
    "parse_smn_http": "cloudeye",
    "parse_smn_trigger": "cloudeye",
    "MappingError": "tickets",
    "TicketMapping": "tickets",
    "load_mappings": "tickets",
    "parse_ticket": "tickets",
    "parse_cloudevent_http": "cloudevents_http",
    "ApigRequest": "triggers",
    "apig_response": "triggers",
    "detect_trigger": "triggers",
}


__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "ApigRequest",
    "LabelNames",
    "MappingError",
    "Parsed",
    "Record",
    "TicketMapping",
    "apig_response",
    "detect_trigger",
    "load_mappings",
    "parse_alertmanager",
    "parse_cloudevent_http",
    "parse_grafana",
    "parse_job_event",
    "parse_message",
    "parse_plain",
    "parse_request",
    "parse_smn_http",
    "parse_smn_trigger",
    "parse_ticket",
]

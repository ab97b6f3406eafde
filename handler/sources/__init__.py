"""Event sources: each turns a raw event into detach requests, or a precise error."""

from handler.sources.plain import parse_accepted, parse_request

__all__ = ["parse_accepted", "parse_request"]

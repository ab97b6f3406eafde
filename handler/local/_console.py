"""Show the flow's log events to a person, one readable line each (``demo``, ``detach``, ``up``).

Fields carry text from outside (a caller's keys and values, the cloud's answers): every text is
shown with its control characters escaped and its rich markup as text, so one event is one line
and nothing a caller sends can style, repaint or forge what the console shows.
"""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.markup import escape

from handler.support.log import LOGGER_NAME, escape_controls, event_fields


def _describe(event: str, f: dict[str, Any]) -> str | None:
    volume, server = f.get("volume_id"), f.get("server_id")
    if event == "detach.requested":
        force = " (force)" if f.get("force") else ""
        disk = f"volume {volume}" if volume else f"the disk at {f.get('device')}"
        return f"[cyan]→[/] detach requested{force}: {disk} from server {server}"
    if event == "detach.accepted":
        return f"[green]✓[/] accepted by ECS (HTTP {f.get('http_status')}): job [bold]{f.get('job_id')}[/]"
    if event == "detach.retry_later":
        return f"[yellow]↻[/] not now, retry in {f.get('retry_after_s')} s: {f.get('reason')}"
    if event == "poll.status":
        return f"[cyan]…[/] poll #{f.get('attempt')}: job {f.get('job_id')} is [bold]{f.get('status')}[/]"
    if event == "detach.result":
        ok = f.get("outcome") in ("succeeded", "already_detached")
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        detail = "" if ok else f" — {f.get('error_code')}: {f.get('fail_reason')}"
        polls = f.get("polls")
        timing = (
            f" after {polls} poll{'' if polls == 1 else 's'}, {f.get('duration_s')} s"
            if f.get("job_id")
            else ""
        )
        return f"{mark} result: [bold]{f.get('outcome')}[/]{timing}{detail}"
    return None


def _text(value: object) -> str:
    """``value`` as text to print: control characters escaped, markup made literal."""
    return escape(escape_controls(str(value)))


def _shown(value: object) -> object:
    """Numbers and flags as they are (the descriptions compare them), anything else as text."""
    return value if value is None or isinstance(value, (bool, int, float)) else _text(value)


class ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        event = _text(getattr(record, "event", record.getMessage()))
        fields = {_text(key): _shown(value) for key, value in event_fields(record).items()}
        line = _describe(event, fields)
        if line is None:
            if record.levelno < logging.WARNING:
                return
            details = ", ".join(f"{k}={v}" for k, v in fields.items())
            line = f"[yellow]![/] {event} {details}"
        self._console.print(line, highlight=False, emoji=False)


def show_events(console: Console) -> None:
    """Route the flow's log events to ``console`` as readable lines."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers = [ConsoleHandler(console)]
    logger.setLevel(logging.INFO)
    logger.propagate = False

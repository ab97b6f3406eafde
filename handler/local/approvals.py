"""``ecs-detach approvals``: list, show, approve, deny, link and sweep the approvals of the
deployment the environment configures (its store and topics; no cloud call: the approved
request's detach is made by whoever consumes the jobs topic, as every other)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TextIO

from handler.core.approval import Approval, ApprovalState
from handler.functions.approvals import Answer, ApprovalDesk, summary

EXIT_OK, EXIT_FAILED = 0, 1


def default_identity() -> str:
    """Who runs the command: ``cli:{login}`` (``--as`` names someone else's identity)."""
    return f"cli:{getpass.getuser()}"


def add_commands(approvals: argparse.ArgumentParser) -> None:
    approvals.set_defaults(all=False, json=False)  # for a bare `approvals` (a list)
    actions = approvals.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the approvals waiting (with --all: the recent ones too)")
    listing.add_argument("--all", action="store_true", help="decided ones too")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one approval with its preview")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    for verb in ("approve", "deny"):
        decide = actions.add_parser(verb, help=f"{verb} a waiting request")
        decide.add_argument("id")
        decide.add_argument("--comment", help="why (recorded with the decision)")
        decide.add_argument(
            "--as", dest="identity", default=None, help="the approver's identity (default: cli:$USER)"
        )
    link = actions.add_parser("link", help="print a signed one-time link that decides as --for")
    link.add_argument("id")
    link.add_argument("--for", dest="identity", required=True, help="whom the link decides as")
    actions.add_parser("sweep", help="end the approvals past their expiry whose turn was lost")


def _line(approval: Approval) -> str:
    request, preview = approval.request, approval.preview
    parts = [
        approval.id,
        f"{approval.state.value:<10}",
        f"{preview.server_name or request.server_id} {preview.device or request.volume_id}",
        f"expires {approval.expires_at.isoformat(timespec='seconds')}",
        "; ".join(preview.approval_rules),
    ]
    if approval.decided_by:
        parts.append(f"by {approval.decided_by}")
    return "  ".join(parts)


def run(desk: ApprovalDesk, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """One action on ``desk``; the exit code."""
    write = out or sys.stdout
    action = args.action or "list"  # no ACTION: list
    if action == "list":
        found = desk.recent()
        shown = found if args.all else [a for a in found if a.state is ApprovalState.PENDING]
        for item in shown:
            print(json.dumps(summary(item)) if args.json else _line(item), file=write)
        if not shown and not args.json:
            print("no approval is waiting" if not args.all else "no approval", file=write)
        return EXIT_OK
    if action == "sweep":
        print(f"{desk.sweep()} overdue approval(s) sent to end", file=write)
        return EXIT_OK
    approval = desk.get(args.id)
    if approval is None:
        print(f"ecs-detach: no approval {args.id}", file=sys.stderr)
        return EXIT_FAILED
    if action == "show":
        print(json.dumps(summary(approval), indent=None if args.json else 2), file=write)
        return EXIT_OK
    if action == "link":
        print(desk.link(args.id, args.identity), file=write)
        return EXIT_OK
    answer = desk.decide(
        args.id, approve=action == "approve", by=args.identity or default_identity(), comment=args.comment
    )
    print(answer.detail, file=write if answer.answer in (Answer.DECIDED, Answer.ALREADY) else sys.stderr)
    return EXIT_OK if answer.answer in (Answer.DECIDED, Answer.ALREADY) else EXIT_FAILED

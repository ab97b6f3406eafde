"""The approval policy as configured (``ECS_DETACH_APPROVAL_*``): whether, and by which rules, a
request waits for a person. Apart from the approvals themselves (``handler.core.approval``), which
only a deployment with approvals on ever loads: the settings read the policy on every cold start.
"""

from collections.abc import Sequence
from typing import Final, Literal, NamedTuple

DEFAULT_EXPIRY_S = 3600.0
ApprovalMode = Literal["never", "always", "rules"]


# A NamedTuple and a plain class, not pydantic models: the settings build both on every cold
# start, from values they have validated already (``ECS_DETACH_APPROVAL_*``), and two models
# cost about 2 ms there (docs/performance.md).
class ApprovalRules(NamedTuple):
    """With ``mode=rules``: a request waits for an approval when any of these matches."""

    force: bool = False  # a force detach (delete_flag=1)
    shared_disk: bool = False  # a disk attached to several servers, or multi-attach
    system_disk_stopped: bool = False  # the system disk of a stopped server
    server_tags: Sequence[str] = ()  # server tags, e.g. "env=prod"
    projects: Sequence[str] = ()  # project ids
    max_disks_per_server: int | None = None  # more disks of one server than this within the window
    window_s: float = 3600.0  # the window of max_disks_per_server

    def any(self) -> bool:
        return bool(
            self.force
            or self.shared_disk
            or self.system_disk_stopped
            or self.server_tags
            or self.projects
            or self.max_disks_per_server
        )


class ApprovalPolicy:
    """Whether a request waits for a person: ``never``, ``always``, or by ``rules``, undecided
    for ``expiry_s`` at most."""

    __slots__ = ("expiry_s", "mode", "rules")

    def __init__(
        self,
        mode: ApprovalMode = "never",
        rules: ApprovalRules = ApprovalRules(),  # noqa: B008 (an immutable NamedTuple)
        expiry_s: float = DEFAULT_EXPIRY_S,
    ) -> None:
        if mode == "rules" and not rules.any():
            raise ValueError("approval mode 'rules' needs at least one rule (ECS_DETACH_APPROVAL_*)")
        self.mode: Final = mode
        self.rules: Final = rules
        self.expiry_s: Final = expiry_s

    @property
    def enabled(self) -> bool:
        return self.mode != "never"

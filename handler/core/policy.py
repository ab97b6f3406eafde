"""What may be detached: the safety policy, evaluated before any mutating call.

Pure decision logic over the request and what the cloud says about the server and the disk.
Every refusal has a stable code (for the ``rejected`` result event) and a reason a person can
act on. The order is fixed: scope (project, server allowlists, required tag) before the disk's
own rules (system disk, shared disk, force), so the cheapest and broadest refusals come first.
"""

from collections.abc import Sequence
from typing import NamedTuple

from handler.core.models import DetachRequest
from handler.core.resources import BlockDevice, Server

STOPPED = "SHUTOFF"


class SafetyPolicy(NamedTuple):
    """The operator's rules, as the settings validated them (a NamedTuple, not a model: it is
    built on every cold start). Empty allowlists mean every project / server."""

    allowed_projects: Sequence[str] = ()
    allowed_servers: Sequence[str] = ()
    required_tag: str | None = None  # e.g. "auto-remediation=true"
    allow_system_disk_when_stopped: bool = False
    allow_shared_disks: bool = False
    allow_force: bool = False


class DiskFacts(NamedTuple):
    """What the cloud says, read just before deciding."""

    server: Server
    devices: list[BlockDevice]
    shared: bool  # attached to more than one server, or a multi-attach volume


class Verdict(NamedTuple):
    allowed: bool
    code: str = ""
    reason: str = ""


ALLOW = Verdict(True)


def _refuse(code: str, reason: str) -> Verdict:
    return Verdict(False, code, reason)


def check_scope(request: DetachRequest, project_id: str, policy: SafetyPolicy) -> Verdict:
    """Rules that need no cloud call: project and server allowlists, force."""
    if policy.allowed_projects and project_id not in policy.allowed_projects:
        return _refuse("PolicyProjectNotAllowed", f"project {project_id} is not in the allowed projects")
    if policy.allowed_servers and request.server_id not in policy.allowed_servers:
        return _refuse("PolicyServerNotAllowed", f"server {request.server_id} is not in the allowed servers")
    if request.delete_flag and not policy.allow_force:
        return _refuse("PolicyForceNotAllowed", "force-detach (delete_flag=1) is not allowed by the policy")
    return ALLOW


def volume_at(device: str | None, server: Server, devices: list[BlockDevice]) -> str | None:
    """The volume attached at ``device``: from the server's own ``volumes_attached``, else from
    its block devices (when they were read)."""
    for attached in server.volumes_attached:
        if attached.device and attached.device == device:
            return attached.id
    return next((d.volume_id for d in devices if d.device == device), None)


def needs_block_devices(request: DetachRequest, server: Server) -> bool:
    """Whether the server's ``volumes_attached`` leaves a question only its block devices answer:
    which volume sits at the requested device, or (with neither a boot index nor a device for
    the volume) whether it is the system disk. Reading them only then saves a call per detach."""
    if request.volume_id is None:
        return volume_at(request.device, server, []) is None
    attached = next((a for a in server.volumes_attached if a.id == request.volume_id), None)
    return attached is None or (attached.boot_index is None and attached.device is None)


def is_system_disk(volume_id: str, facts: DiskFacts) -> bool:
    """The server's root device or boot index 0 (docs/cloud-api.md §9), from the server's own
    ``volumes_attached``; the block devices, when read, corroborate."""
    server = facts.server
    root = server.root_device_name
    for attached in server.volumes_attached:
        if attached.id == volume_id and (attached.boot_index == "0" or (root and attached.device == root)):
            return True
    device = next((d for d in facts.devices if d.volume_id == volume_id), None)
    if device is None:
        return False
    return bool(root) and device.device == root


def check_disk(request: DetachRequest, volume_id: str, facts: DiskFacts, policy: SafetyPolicy) -> Verdict:
    """Rules about this server and disk: required tag, system disk, shared disk."""
    server = facts.server
    if policy.required_tag and policy.required_tag not in server.tags:
        return _refuse(
            "PolicyTagMissing", f"server {server.id} does not carry the required tag {policy.required_tag!r}"
        )
    if is_system_disk(volume_id, facts):
        if not policy.allow_system_disk_when_stopped:
            return _refuse("PolicySystemDisk", f"volume {volume_id} is the system disk of server {server.id}")
        if server.status != STOPPED:
            return _refuse(
                "PolicySystemDiskRunning",
                f"volume {volume_id} is the system disk; server {server.id} is {server.status}, not stopped",
            )
        if request.delete_flag:
            return _refuse("PolicySystemDiskForce", "a system disk cannot be force-detached")
    if facts.shared and not policy.allow_shared_disks:
        return _refuse("PolicySharedDisk", f"volume {volume_id} is shared by several servers")
    return ALLOW

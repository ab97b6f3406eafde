"""State of the emulated cloud and its job engine; no HTTP here (moto's ``models.py``).

Records are frozen dataclasses replaced under one lock, so any record handed out is a consistent
snapshot. Jobs advance lazily: every public call first moves all jobs to the clock's ``now``.
The job faults of ``EmulatorConfig.faults`` (duration draws, failure rate, settle lag) are drawn
when a job is submitted.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from emulator.config import EmulatorConfig, EmulatorCredential
from emulator.faults import FaultConfig, FaultInjector
from emulator.seed import DEVICE_RE, UUID_RE, Seed, parse_seed

Clock = Callable[[], float]

SHUTOFF = "SHUTOFF"
IN_USE, AVAILABLE, DETACHING, ATTACHING = "in-use", "available", "detaching", "attaching"
INIT, RUNNING, SUCCESS, FAIL = "INIT", "RUNNING", "SUCCESS", "FAIL"
DETACH_JOB, ATTACH_JOB = "detachVolume", "attachVolume"
MAX_BLK_DISKS = 24
MAX_SCSI_DISKS = 60
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 25, 1000


def iso_ms(timestamp: float) -> str:
    """``2024-01-15T08:30:01.120Z``: the job API's time format."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_s(timestamp: float) -> str:
    """``2024-01-15T08:30:01Z``: the server API's time format."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def new_id() -> str:
    """A fresh 32-hex identifier (job ids, request ids)."""
    return uuid.uuid4().hex


class EcsError(Exception):
    """An ECS API error: HTTP status, ``Ecs.xxxx`` code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class NovaError(EcsError):
    """An OpenStack-style error (EVS v2): ``code`` is the body's key, e.g. ``itemNotFound``."""


def invalid_parameter(message: str) -> EcsError:
    """400 ``Ecs.0005``; ``message`` names the parameter."""
    return EcsError(400, "Ecs.0005", f"Invalid parameter: {message}")


def require_uuid(name: str, value: str) -> None:
    """Raise ``Ecs.0005`` unless ``value`` is a lower-case UUID."""
    if not UUID_RE.match(value):
        raise invalid_parameter(f"{name} '{value}' is not a UUID")


@dataclass(frozen=True)
class Server:
    """One ECS server (disks are in ``Attachment`` records)."""

    id: str
    project_id: str
    name: str
    status: str
    root_device_name: str
    tags: Mapping[str, str]
    metadata: Mapping[str, str]
    locked: bool
    created: float
    updated: float


@dataclass(frozen=True)
class Volume:
    """One EVS disk; ``status`` is in-use, available, detaching or attaching."""

    id: str
    project_id: str
    name: str
    size: int
    bootable: bool
    multiattach: bool
    status: str
    volume_type: str = "SSD"


@dataclass(frozen=True)
class Attachment:
    """A disk on a server; ``boot_index`` 0 marks the system disk, -1 a data disk."""

    server_id: str
    volume_id: str
    device: str
    boot_index: int
    bus: str
    pci_address: str
    attachment_id: str
    attached_at: float


@dataclass(frozen=True)
class JobFailure:
    """How a job ends when it fails."""

    error_code: str
    fail_reason: str


@dataclass(frozen=True)
class VolumeFault:
    """Injected behaviour of the next detach jobs of one volume."""

    detach_fails_with: JobFailure | None = None
    job_duration_s: float | None = None


@dataclass(frozen=True)
class Job:
    """An asynchronous attach or detach with one sub-job; ``end`` is set once finished.

    A successful detach leaves the disk attached (volume ``detaching``) until ``settles_at``."""

    id: str
    sub_job_id: str
    job_type: str
    project_id: str
    server_id: str
    volume_id: str
    device: str
    begin: float
    running_at: float
    ends_at: float
    failure: JobFailure | None
    settles_at: float
    status: str = INIT
    end: float | None = None

    @property
    def finished(self) -> bool:
        """SUCCESS or FAIL."""
        return self.end is not None


@dataclass(frozen=True)
class AttachedVolume:
    """An attachment with its volume."""

    attachment: Attachment
    volume: Volume


@dataclass(frozen=True)
class VolumeDetail:
    """A volume with its attachments, oldest first."""

    volume: Volume
    attachments: tuple[Attachment, ...]


@dataclass(frozen=True)
class ServerDetail:
    """A server with its attached disks, system disk first."""

    server: Server
    volumes: tuple[AttachedVolume, ...]

    def free_slots(self) -> tuple[int, int, int]:
        """How many more SCSI, virtio-blk and disks in all can be attached."""
        scsi = sum(1 for v in self.volumes if v.attachment.bus == "scsi")
        blk = len(self.volumes) - scsi
        return MAX_SCSI_DISKS - scsi, MAX_BLK_DISKS - blk, MAX_BLK_DISKS - len(self.volumes)


@dataclass(frozen=True)
class CallRecord:
    """One call to the signed API, as the ledger keeps it.

    ``status`` 0: nothing was answered (a dropped connection, or the client left during a hang).
    ``fault`` is the injected fault's kind (``error``, ``drop_after_commit``, ``rate_limit``…);
    ``reached_backend`` is false when the gateway answered without ECS performing the call."""

    time: str
    method: str
    path: str
    status: int
    server_id: str | None
    volume_id: str | None
    job_id: str | None
    error_code: str | None
    request_id: str
    fault: str | None = None
    reached_backend: bool = True


@dataclass(frozen=True)
class DetachRecord:
    """A detach that took effect (its job reached SUCCESS)."""

    server_id: str
    volume_id: str
    job_id: str
    time: str


@dataclass(frozen=True)
class Snapshot:
    """Everything the backend holds, at ``now``."""

    now: float
    config: EmulatorConfig
    credentials: tuple[str, ...]
    servers: tuple[ServerDetail, ...]
    volumes: tuple[Volume, ...]
    jobs: tuple[Job, ...]
    faults: Mapping[str, VolumeFault]


class _Attachments:
    """The disks on the servers, found by server and by volume without a scan: with a scan, each
    call cost the emulator time in proportion to the disks of the whole seed (about 1 ms a call
    with 10,000 servers), which the real API does not."""

    def __init__(self) -> None:
        self._by_server: dict[str, dict[str, Attachment]] = {}
        self._by_volume: dict[str, dict[str, Attachment]] = {}

    def get(self, server_id: str, volume_id: str) -> Attachment | None:
        return self._by_server.get(server_id, {}).get(volume_id)

    def put(self, attachment: Attachment) -> None:
        self._by_server.setdefault(attachment.server_id, {})[attachment.volume_id] = attachment
        self._by_volume.setdefault(attachment.volume_id, {})[attachment.server_id] = attachment

    def remove(self, server_id: str, volume_id: str) -> None:
        del self._by_server[server_id][volume_id]
        del self._by_volume[volume_id][server_id]

    def of_server(self, server_id: str) -> list[Attachment]:
        return list(self._by_server.get(server_id, {}).values())

    def of_volume(self, volume_id: str) -> list[Attachment]:
        return list(self._by_volume.get(volume_id, {}).values())


@dataclass
class _State:
    servers: dict[str, Server] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    attachments: _Attachments = field(default_factory=_Attachments)
    jobs: dict[str, Job] = field(default_factory=dict)
    faults: dict[str, VolumeFault] = field(default_factory=dict)
    settling: dict[str, Job] = field(default_factory=dict)
    calls: list[CallRecord] = field(default_factory=list)
    detaches: list[DetachRecord] = field(default_factory=list)


class EcsBackend:
    """Projects' servers, volumes, attachments and jobs, plus the accepted credentials."""

    def __init__(
        self,
        *,
        credentials: Sequence[EmulatorCredential],
        config: EmulatorConfig | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not credentials:
            raise ValueError("the emulator needs at least one credential")
        keys = [c.access_key for c in credentials]
        if len(set(keys)) != len(keys):
            raise ValueError("two credentials share an access key")
        self._credentials = tuple(credentials)
        self._config = config or EmulatorConfig()
        self._clock = clock
        self._faults = FaultInjector(self._config.faults, clock)
        self._lock = threading.RLock()
        self._seed = Seed()
        self._state = _State()

    @classmethod
    def from_seed(
        cls,
        seed: Mapping[str, Any],
        *,
        credentials: Sequence[EmulatorCredential],
        config: EmulatorConfig | None = None,
        clock: Clock = time.time,
    ) -> EcsBackend:
        """A backend holding ``seed`` (see ``emulator.seed``)."""
        backend = cls(credentials=credentials, config=config, clock=clock)
        backend.load(seed)
        return backend

    # -- set-up and configuration --------------------------------------------------------

    def load(self, seed: Mapping[str, Any]) -> None:
        """Replace all state with ``seed``; jobs, faults and the ledger start empty."""
        parsed = parse_seed(dict(seed))
        with self._lock:
            self._seed = parsed
            self.reset()

    def reset(self) -> None:
        """Reload the last seed; the configuration is kept, its fault draws start afresh."""
        with self._lock:
            project_id = self._seed.project_id or self._credentials[0].project_id
            self._state = _state_from_seed(self._seed, project_id)
            self._faults = FaultInjector(self._config.faults, self._clock)

    @property
    def config(self) -> EmulatorConfig:
        """The current configuration."""
        return self._config

    def update_config(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Change configuration fields (validated); returns the new configuration. Changing
        ``faults`` starts its draws afresh."""
        with self._advanced():
            self._config = self._config.updated(changes)
            if "faults" in changes:
                self._faults = FaultInjector(self._config.faults, self._clock)
            return self._config

    @property
    def faults(self) -> FaultInjector:
        """The injector of the current ``config.faults``."""
        return self._faults

    def set_faults(self, faults: FaultConfig) -> FaultConfig:
        """Replace the injected faults (``FaultConfig()``: none)."""
        return self.update_config({"faults": faults}).faults

    def now(self) -> float:
        """The emulator clock."""
        return self._clock()

    def credential(self, access_key: str) -> EmulatorCredential | None:
        """The accepted credential with this access key, if any."""
        return next((c for c in self._credentials if c.access_key == access_key), None)

    def describe_credentials(self) -> list[str]:
        """One line per accepted credential, for a start-up banner (no secrets)."""
        return [credential.describe() for credential in self._credentials]

    # -- the job engine --------------------------------------------------------------------

    @contextmanager
    def _advanced(self) -> Iterator[float]:
        with self._lock:
            now = self._clock()
            self._advance(now)
            yield now

    def _advance(self, now: float) -> None:
        pending = sorted(
            (job for job in self._state.jobs.values() if not job.finished),
            key=lambda job: job.ends_at,
        )
        for job in pending:
            if now >= job.ends_at:
                self._finish(job)
            elif now >= job.running_at and job.status == INIT:
                self._state.jobs[job.id] = replace(job, status=RUNNING)
        for job in sorted(self._state.settling.values(), key=lambda job: job.settles_at):
            if now >= job.settles_at:
                self._settle(job)
        retention = self._config.job_retention_s
        for job in list(self._state.jobs.values()):
            if job.end is not None and now >= job.end + retention:
                del self._state.jobs[job.id]

    def _finish(self, job: Job) -> None:
        state = self._state
        if job.failure is not None:
            state.jobs[job.id] = replace(job, status=FAIL, end=job.ends_at)
        elif job.job_type == DETACH_JOB:
            state.detaches.append(DetachRecord(job.server_id, job.volume_id, job.id, iso_ms(job.ends_at)))
            state.jobs[job.id] = replace(job, status=SUCCESS, end=job.ends_at)
            if job.settles_at > job.ends_at:
                state.settling[job.id] = job
                return
            state.attachments.remove(job.server_id, job.volume_id)
        else:
            state.attachments.put(
                _attachment(
                    job.server_id, job.volume_id, job.device, -1, _bus(job.device), attached_at=job.ends_at
                )
            )
            state.jobs[job.id] = replace(job, status=SUCCESS, end=job.ends_at)
        self._refresh_volume(job.volume_id)

    def _settle(self, job: Job) -> None:
        del self._state.settling[job.id]
        self._state.attachments.remove(job.server_id, job.volume_id)
        self._refresh_volume(job.volume_id)

    def _refresh_volume(self, volume_id: str) -> None:
        state = self._state
        attached = bool(state.attachments.of_volume(volume_id))
        state.volumes[volume_id] = replace(state.volumes[volume_id], status=IN_USE if attached else AVAILABLE)

    def _submit(self, now: float, job_type: str, server: Server, volume: Volume, device: str) -> Job:
        fault = self._state.faults.get(volume.id, VolumeFault())
        init = self._config.job_init_s
        duration = fault.job_duration_s if job_type == DETACH_JOB else None
        if duration is None:
            duration = self._faults.job_duration(self._config.job_duration_s)
        failure = None
        lag = 0.0
        if job_type == DETACH_JOB:
            failure = fault.detach_fails_with
            if failure is None and (rule := self._faults.job_failure()) is not None:
                failure = JobFailure(rule.error_code, rule.fail_reason)
            if failure is None:
                lag = self._faults.settle_lag()
        ends_at = now + max(init, duration)
        job = Job(
            id=new_id(),
            sub_job_id=new_id(),
            job_type=job_type,
            project_id=server.project_id,
            server_id=server.id,
            volume_id=volume.id,
            device=device,
            begin=now,
            running_at=now + init,
            ends_at=ends_at,
            failure=failure,
            settles_at=ends_at + lag,
        )
        self._state.jobs[job.id] = job
        status = DETACHING if job_type == DETACH_JOB else ATTACHING
        self._state.volumes[volume.id] = replace(volume, status=status)
        return job

    # -- lookups ---------------------------------------------------------------------------

    def _server(self, project_id: str, server_id: str) -> Server:
        server = self._state.servers.get(server_id)
        if server is None or server.project_id != project_id:
            raise EcsError(404, "Ecs.0114", f"The ECS {server_id} does not exist.")
        return server

    def _volume(self, project_id: str, volume_id: str) -> Volume:
        volume = self._state.volumes.get(volume_id)
        if volume is None or volume.project_id != project_id:
            raise EcsError(
                400,
                "Ecs.1000",
                'Call EVS failed: {"itemNotFound": {"code": 404, "message": '
                f'"Volume {volume_id} could not be found."}}}}',
            )
        return volume

    def _detail(self, server: Server) -> ServerDetail:
        state = self._state
        attached = state.attachments.of_server(server.id)
        volumes = [AttachedVolume(a, state.volumes[a.volume_id]) for a in attached]
        volumes.sort(key=lambda v: (v.attachment.boot_index != 0, v.attachment.device))
        return ServerDetail(server, tuple(volumes))

    def _require_ready(self, server: Server) -> None:
        if server.locked:
            raise EcsError(400, "Ecs.0605", f"The ECS {server.id} is locked.")
        if any(j.server_id == server.id and not j.finished for j in self._state.jobs.values()):
            raise EcsError(
                501,
                "Ecs.0603",
                f"Other commands are being executed on the ECS {server.id}; retry later.",
            )

    # -- the API ---------------------------------------------------------------------------

    def get_server(self, project_id: str, server_id: str) -> ServerDetail:
        """One server with its disks (404 ``Ecs.0114`` if unknown)."""
        require_uuid("server_id", server_id)
        with self._advanced():
            return self._detail(self._server(project_id, server_id))

    def list_servers(
        self,
        project_id: str,
        *,
        name: str | None = None,
        status: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        offset: int = 1,
    ) -> tuple[int, list[ServerDetail]]:
        """The matching count and one page; ``offset`` is a page number (0 and 1: the first)."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise invalid_parameter(f"limit must be 1..{MAX_PAGE_SIZE}")
        if offset < 0:
            raise invalid_parameter("offset must not be negative")
        pattern = _name_pattern(name)
        with self._advanced():
            matching = [
                server
                for server in self._state.servers.values()
                if server.project_id == project_id
                and (pattern is None or pattern.search(server.name))
                and (status is None or server.status == status.upper())
            ]
            start = (max(offset, 1) - 1) * limit
            page = [self._detail(server) for server in matching[start : start + limit]]
            return len(matching), page

    def get_volume(self, project_id: str, volume_id: str) -> VolumeDetail:
        """One EVS disk with its attachments (404 ``itemNotFound`` if unknown, as EVS answers)."""
        with self._advanced():
            volume = self._state.volumes.get(volume_id)
            if volume is None or volume.project_id != project_id:
                raise NovaError(404, "itemNotFound", f"Volume {volume_id} could not be found.")
            attachments = self._state.attachments.of_volume(volume_id)
            attachments.sort(key=lambda a: (a.attached_at, a.server_id))
            return VolumeDetail(volume, tuple(attachments))

    def get_attachment(self, project_id: str, server_id: str, volume_id: str) -> AttachedVolume:
        """One disk of a server (404 ``Ecs.0111`` if not attached to it)."""
        require_uuid("server_id", server_id)
        require_uuid("volume_id", volume_id)
        with self._advanced():
            detail = self._detail(self._server(project_id, server_id))
            for attached in detail.volumes:
                if attached.volume.id == volume_id:
                    return attached
            raise EcsError(404, "Ecs.0111", f"The disk {volume_id} is not attached to the ECS {server_id}.")

    def detach_volume(
        self, project_id: str, server_id: str, volume_id: str, delete_flag: str | None = None
    ) -> Job:
        """Start a ``detachVolume`` job (checks in the order the ECS API documents them)."""
        require_uuid("server_id", server_id)
        require_uuid("volume_id", volume_id)
        if delete_flag not in (None, "0", "1"):
            raise invalid_parameter(f"delete_flag '{delete_flag}' must be 0 or 1")
        with self._advanced() as now:
            server = self._server(project_id, server_id)
            volume = self._volume(project_id, volume_id)
            self._require_ready(server)
            attachment = self._state.attachments.get(server_id, volume_id)
            if attachment is None:
                raise EcsError(
                    400,
                    "Ecs.0111",
                    f"The disk {volume_id} is not attached to the ECS {server_id}.",
                )
            if attachment.boot_index == 0 or attachment.device == server.root_device_name:
                if delete_flag == "1":
                    raise invalid_parameter("delete_flag=1 is not allowed for a system disk")
                if server.status != SHUTOFF:
                    raise EcsError(
                        400,
                        "Ecs.0100",
                        "The ECS status does not meet requirements: a system disk can be "
                        f"detached only from a stopped server (status {server.status}).",
                    )
            if volume.status != IN_USE:
                raise EcsError(
                    400,
                    "Ecs.0102",
                    f"The disk status does not allow detaching (status {volume.status}).",
                )
            return self._submit(now, DETACH_JOB, server, volume, attachment.device)

    def attach_volume(
        self, project_id: str, server_id: str, volume_id: str, device: str | None = None
    ) -> Job:
        """Start an ``attachVolume`` job; without ``device`` the next free /dev/vdX is used."""
        require_uuid("server_id", server_id)
        require_uuid("volumeId", volume_id)
        if device is not None and not DEVICE_RE.match(device):
            raise invalid_parameter(f"device '{device}' is not a device name like /dev/vdb")
        with self._advanced() as now:
            server = self._server(project_id, server_id)
            volume = self._volume(project_id, volume_id)
            self._require_ready(server)
            holders = {a.server_id for a in self._state.attachments.of_volume(volume_id)}
            if server_id in holders or volume.status not in (IN_USE, AVAILABLE):
                raise EcsError(
                    400,
                    "Ecs.0102",
                    f"The disk status does not allow attaching (status {volume.status}).",
                )
            if holders and not volume.multiattach:
                raise EcsError(
                    400,
                    "Ecs.0102",
                    f"The disk {volume_id} is attached to another server and is not shared.",
                )
            used = {a.device for a in self._state.attachments.of_server(server_id)}
            device = device or _next_free_device(used)
            if device in used:
                raise invalid_parameter(f"device {device} is already in use on the server")
            return self._submit(now, ATTACH_JOB, server, volume, device)

    def get_job(self, project_id: str, job_id: str) -> Job:
        """One job; unknown, expired or another project's → 404 ``Common.0024``."""
        with self._advanced():
            job = self._state.jobs.get(job_id)
            if job is None or job.project_id != project_id:
                # The real code for a missing job is undocumented; Common.0024 is our choice.
                raise EcsError(404, "Common.0024", f"job {job_id} not found")
            return job

    # -- fault injection, ledger, snapshot -------------------------------------------------

    def volume_fault(self, volume_id: str) -> VolumeFault:
        """The injected behaviour of a volume (``KeyError`` if the volume is unknown)."""
        with self._lock:
            if volume_id not in self._state.volumes:
                raise KeyError(volume_id)
            return self._state.faults.get(volume_id, VolumeFault())

    def set_volume_fault(self, volume_id: str, fault: VolumeFault) -> None:
        """Make the next detach jobs of a volume fail or take ``fault.job_duration_s``."""
        with self._lock:
            if volume_id not in self._state.volumes:
                raise KeyError(volume_id)
            self._state.faults[volume_id] = fault

    def record_call(self, record: CallRecord) -> None:
        """Append one API call to the ledger."""
        with self._lock:
            self._state.calls.append(record)

    def ledger(self) -> tuple[list[CallRecord], list[DetachRecord]]:
        """Every API call, and every detach that took effect, oldest first."""
        with self._advanced():
            return list(self._state.calls), list(self._state.detaches)

    def snapshot(self) -> Snapshot:
        """Everything, after advancing jobs."""
        with self._advanced() as now:
            state = self._state
            return Snapshot(
                now=now,
                config=self._config,
                credentials=tuple(self.describe_credentials()),
                servers=tuple(self._detail(s) for s in state.servers.values()),
                volumes=tuple(state.volumes.values()),
                jobs=tuple(state.jobs.values()),
                faults=dict(state.faults),
            )


def _state_from_seed(seed: Seed, project_id: str) -> _State:
    state = _State()
    for sv in seed.volumes:
        state.volumes[sv.id] = Volume(
            sv.id, project_id, sv.name, sv.size, sv.bootable, sv.multiattach, AVAILABLE, sv.volume_type
        )
    for ss in seed.servers:
        created = ss.created.timestamp()
        state.servers[ss.id] = Server(
            id=ss.id,
            project_id=project_id,
            name=ss.name,
            status=ss.status,
            root_device_name=ss.root_device_name,
            tags=dict(ss.tags),
            metadata=dict(ss.metadata),
            locked=ss.locked,
            created=created,
            updated=created,
        )
        for sa in ss.attachments:
            boot = sa.boot_index
            if boot is None:
                boot = 0 if sa.device == ss.root_device_name else -1
            attachment = _attachment(ss.id, sa.volume_id, sa.device, boot, sa.bus, attached_at=created)
            state.attachments.put(attachment)
            state.volumes[sa.volume_id] = replace(state.volumes[sa.volume_id], status=IN_USE)
    return state


def _attachment(
    server_id: str, volume_id: str, device: str, boot: int, bus: str, *, attached_at: float
) -> Attachment:
    slot = ord(device[-1]) - ord("a") + 1
    bus_number = 1 if bus == "scsi" else 2
    pci_address = f"0000:{bus_number:02x}:{slot:02x}.0"
    return Attachment(server_id, volume_id, device, boot, bus, pci_address, str(uuid.uuid4()), attached_at)


def _bus(device: str) -> str:
    return "scsi" if device.startswith("/dev/sd") else "virtio"


def _next_free_device(used: set[str]) -> str:
    for letter in "bcdefghijklmnopqrstuvwxyz":
        device = f"/dev/vd{letter}"
        if device not in used:
            return device
    raise invalid_parameter("device: no free device name left on the server")


def _name_pattern(name: str | None) -> re.Pattern[str] | None:
    """The ECS name filter: a substring match where ``.`` matches any character but newline."""
    if name is None:
        return None
    return re.compile(r"[^\n\r]".join(re.escape(part) for part in name.split(".")))

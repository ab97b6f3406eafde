"""Seed files: the servers, disks and attachments an emulator starts with.

A seed is a JSON object::

    {
      "project_id": null,
      "volumes": [
        {"id": "<uuid>", "name": "data-1", "size": 100, "bootable": false, "multiattach": false}
      ],
      "servers": [
        {"id": "<uuid>", "name": "web-1", "status": "ACTIVE", "locked": false,
         "root_device_name": "/dev/vda", "created": "2024-01-10T08:00:00Z",
         "tags": {"auto-remediation": "true"}, "metadata": {"os_type": "Linux"},
         "attachments": [{"volume_id": "<uuid>", "device": "/dev/vdb", "bus": "virtio"}]}
      ]
    }

Only ``id`` and ``name`` are required; the other fields default to the values shown (``tags``,
``metadata`` and ``attachments`` to empty). ``project_id`` null or absent means the project of
the first accepted credential. An attachment's ``boot_index`` defaults to 0 when its device is
the server's root device, else -1. A disk is ``in-use`` when attached, else ``available``; only a
``multiattach`` disk may be attached to more than one server.

The default seed (``default_seed.json``), all in one project:

=========  ======================================  ========  ===============================
server     id                                      state     disks (device: volume id)
=========  ======================================  ========  ===============================
web-1      1b3c5e7f-0000-4000-8000-00000000aaaa    ACTIVE    vda: 2c4d6e8f-…-000000000001,
           tags auto-remediation=true                        vdb: 2c4d6e8f-…-00000000bbbb,
                                                             vdc: 2c4d6e8f-…-00000000cccc
web-2      1b3c5e7f-0000-4000-8000-00000000a002    ACTIVE    vda: …-000000000002, vdb: …-00000000b002
db-1       1b3c5e7f-0000-4000-8000-00000000a003    SHUTOFF   vda: …-000000000003, vdb: …-00000000b003
batch-1    1b3c5e7f-0000-4000-8000-00000000a004    ACTIVE,   vda: …-000000000004, vdb: …-00000000b004
                                                   locked
cluster-1  1b3c5e7f-0000-4000-8000-00000000a005    ACTIVE    vda: …-000000000005, sda (scsi): shared
cluster-2  1b3c5e7f-0000-4000-8000-00000000a006    ACTIVE    vda: …-000000000006, sda (scsi): shared
=========  ======================================  ========  ===============================

Volume ids all start ``2c4d6e8f-0000-4000-8000-``. The shared disk is
``2c4d6e8f-0000-4000-8000-00000000dddd`` (multiattach, ``/dev/sda`` on both cluster servers,
whose system disk is ``/dev/vda``); ``2c4d6e8f-0000-4000-8000-00000000eeee`` is an unattached
disk for attach tests.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEVICE_RE = re.compile(r"^/dev/(?:x?vd|sd)[a-z]$")


class _SeedModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeedVolume(_SeedModel):
    """One EVS disk."""

    id: str = Field(pattern=UUID_RE.pattern)
    name: str
    size: int = Field(default=40, gt=0)
    bootable: bool = False
    multiattach: bool = False
    volume_type: str = Field(default="SSD", description="EVS disk type: SATA, SAS, SSD, GPSSD, ESSD…")


class SeedAttachment(_SeedModel):
    """One disk attached to the server that lists it."""

    volume_id: str
    device: str = Field(pattern=DEVICE_RE.pattern)
    boot_index: int | None = None
    bus: str = "virtio"


class SeedServer(_SeedModel):
    """One ECS server with its attachments."""

    id: str = Field(pattern=UUID_RE.pattern)
    name: str
    status: str = "ACTIVE"
    locked: bool = False
    root_device_name: str = "/dev/vda"
    created: datetime = datetime(2024, 1, 10, 8, 0, tzinfo=timezone.utc)
    tags: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    attachments: list[SeedAttachment] = Field(default_factory=list)


class Seed(_SeedModel):
    """A whole seed, checked for dangling and conflicting references."""

    project_id: str | None = None
    volumes: list[SeedVolume] = Field(default_factory=list)
    servers: list[SeedServer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_references(self) -> Seed:
        volumes = {volume.id: volume for volume in self.volumes}
        _require_unique("volume", [volume.id for volume in self.volumes])
        _require_unique("server", [server.id for server in self.servers])
        attached: list[str] = []
        for server in self.servers:
            _require_unique(f"device on server {server.id}", [a.device for a in server.attachments])
            for attachment in server.attachments:
                if attachment.volume_id not in volumes:
                    raise ValueError(f"server {server.id} attaches unknown volume")
                attached.append(attachment.volume_id)
        single = [v for v in attached if not volumes[v].multiattach]
        _require_unique("attachment of a non-multiattach volume", single)
        return self


def _require_unique(what: str, values: list[str]) -> None:
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(duplicates)}")


class SeedError(ValueError):
    """A seed file that cannot be read; the message names the file and what is wrong."""


def load_seed(path: str | Path | None = None) -> dict[str, Any]:
    """Read a seed file; ``None`` reads the packaged default seed. Raises ``SeedError``."""
    if path is None:
        text = resources.files("emulator").joinpath("default_seed.json").read_text("utf-8")
    else:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SeedError(f"seed {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SeedError(f"seed {path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SeedError(f"seed {path}: a seed must be a JSON object")
    return data


def parse_seed(seed: dict[str, Any]) -> Seed:
    """Validate a seed (``pydantic.ValidationError`` names what is wrong)."""
    return Seed.model_validate(seed)

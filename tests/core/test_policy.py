"""The policy's disk facts: the server's own ``volumes_attached`` settles most requests, so the
block devices are read only when it leaves a question open."""

from __future__ import annotations

from typing import Any

import pytest

from handler.core.models import DetachRequest
from handler.core.policy import DiskFacts, is_system_disk, needs_block_devices
from handler.core.resources import BlockDevice, Server

SERVER = "1b3c5e7f-0000-4000-8000-00000000aaaa"
ROOT, DATA = "2c4d6e8f-0000-4000-8000-000000000001", "2c4d6e8f-0000-4000-8000-000000000002"


def _server(*attached: dict[str, Any]) -> Server:
    return Server.model_validate(
        {
            "id": SERVER,
            "status": "ACTIVE",
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
            "os-extended-volumes:volumes_attached": list(attached),
        }
    )


FULL = _server(
    {"id": ROOT, "device": "/dev/vda", "bootIndex": "0"},
    {"id": DATA, "device": "/dev/vdb", "bootIndex": "-1"},
)
BARE = _server({"id": ROOT}, {"id": DATA})  # an older API answer: ids only
DEVICES_ONLY = _server(
    {"id": ROOT, "device": "/dev/vda"}, {"id": DATA, "device": "/dev/vdb"}
)  # no boot index


@pytest.mark.parametrize(
    ("server", "request_fields", "needed"),
    [
        (FULL, {"volume_id": DATA}, False),
        (FULL, {"device": "/dev/vdb"}, False),
        (FULL, {"device": "/dev/vdz"}, True),  # no such device in the server's view: ask
        (BARE, {"volume_id": DATA}, True),
        (BARE, {"device": "/dev/vdb"}, True),
        (FULL, {"volume_id": "2c4d6e8f-0000-4000-8000-0000000000ff"}, True),  # not listed
        (DEVICES_ONLY, {"volume_id": DATA}, False),  # its device against the root device settles it
    ],
)
def test_block_devices_are_read_only_when_the_server_leaves_a_question(
    server: Server, request_fields: dict[str, str], needed: bool
) -> None:
    request = DetachRequest.model_validate({"server_id": SERVER, **request_fields})
    assert needs_block_devices(request, server) is needed


def test_the_system_disk_is_known_by_its_device_alone() -> None:
    server = _server({"id": ROOT, "device": "/dev/vda"}, {"id": DATA, "device": "/dev/vdb"})
    facts = DiskFacts(server, [], shared=False)
    assert is_system_disk(ROOT, facts)
    assert not is_system_disk(DATA, facts)


def test_block_devices_still_corroborate_a_bare_server_answer() -> None:
    devices = [
        BlockDevice.model_validate({"volumeId": ROOT, "device": "/dev/vda", "bootIndex": 0}),
        BlockDevice.model_validate({"volumeId": DATA, "device": "/dev/vdb", "bootIndex": 1}),
    ]
    facts = DiskFacts(BARE, devices, shared=False)
    assert is_system_disk(ROOT, facts)
    assert not is_system_disk(DATA, facts)

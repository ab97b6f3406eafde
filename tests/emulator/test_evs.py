"""EVS ``GET /v2/{project_id}/cloudvolumes/{volume_id}``: the backend, then the route over loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from emulator import DEMO_CREDENTIAL, EcsBackend, create_app, load_seed
from emulator.models import NovaError
from handler.cloud import Credentials, SignerAuth
from handler.local._serve import BackgroundServer
from tests.support import (
    CLUSTER1,
    CLUSTER2,
    PID,
    SHARED,
    SPARE,
    UNKNOWN,
    WEB1,
    WEB1_DATA,
    WEB1_SYSTEM,
    FakeClock,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def volume_path(volume_id: str) -> str:
    return f"/v2/{PID}/cloudvolumes/{volume_id}"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """One emulator for the module: these tests only read."""
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL])
    with BackgroundServer(create_app(backend)) as server:
        yield server.url


@pytest.fixture
def evs(url: str) -> Iterator[httpx.Client]:
    credentials = Credentials(
        access_key=DEMO_CREDENTIAL.access_key,
        secret_key=SecretStr(DEMO_CREDENTIAL.secret_key),
        project_id=PID,
    )
    with httpx.Client(base_url=url, auth=SignerAuth(credentials)) as client:
        yield client


# -- the backend -------------------------------------------------------------------------------


def test_get_volume_follows_detach_and_attach_jobs(backend: EcsBackend, clock: FakeClock) -> None:
    detail = backend.get_volume(PID, WEB1_DATA)
    assert (detail.volume.status, [a.server_id for a in detail.attachments]) == ("in-use", [WEB1])

    backend.detach_volume(PID, WEB1, WEB1_DATA)
    assert backend.get_volume(PID, WEB1_DATA).volume.status == "detaching"
    assert len(backend.get_volume(PID, WEB1_DATA).attachments) == 1  # until the job succeeds
    clock.advance(3)
    detail = backend.get_volume(PID, WEB1_DATA)
    assert (detail.volume.status, detail.attachments) == ("available", ())

    job = backend.attach_volume(PID, WEB1, SPARE, "/dev/vdf")
    clock.advance(3)
    (attachment,) = backend.get_volume(PID, SPARE).attachments
    assert (attachment.device, attachment.attached_at) == ("/dev/vdf", job.ends_at)
    assert UUID.match(attachment.attachment_id)


def test_get_volume_unknown_or_other_project(backend: EcsBackend) -> None:
    for project_id, volume_id in ((PID, UNKNOWN), ("f" * 32, WEB1_DATA), (PID, "not-a-uuid")):
        with pytest.raises(NovaError) as caught:
            backend.get_volume(project_id, volume_id)
        assert (caught.value.status, caught.value.code) == (404, "itemNotFound")
        assert caught.value.message == f"Volume {volume_id} could not be found."


# -- over HTTP -----------------------------------------------------------------------------------


def test_volume_shape(evs: httpx.Client) -> None:
    response = evs.get(volume_path(WEB1_DATA))
    assert response.status_code == 200
    volume = response.json()["volume"]
    (attachment,) = volume.pop("attachments")
    assert volume == {
        "id": WEB1_DATA,
        "name": "web-1-data",
        "status": "in-use",
        "size": 100,
        "volume_type": "SSD",
        "bootable": "false",
        "multiattach": False,
        "shareable": "false",
        "metadata": {},
        "os-vol-tenant-attr:tenant_id": PID,
    }
    assert UUID.match(attachment.pop("attachment_id"))
    assert attachment == {
        "id": WEB1_DATA,
        "server_id": WEB1,
        "volume_id": WEB1_DATA,
        "device": "/dev/vdb",
        "host_name": None,
        "attached_at": "2024-01-10T08:00:00.000000",
    }
    assert HEX32.match(response.headers["X-Request-Id"])


def test_system_shared_and_spare_volumes(evs: httpx.Client) -> None:
    system = evs.get(volume_path(WEB1_SYSTEM)).json()["volume"]
    assert (system["bootable"], system["attachments"][0]["device"]) == ("true", "/dev/vda")

    shared = evs.get(volume_path(SHARED)).json()["volume"]
    assert (shared["multiattach"], shared["shareable"]) == (True, "true")
    assert [(a["server_id"], a["device"]) for a in shared["attachments"]] == [
        (CLUSTER1, "/dev/sda"),
        (CLUSTER2, "/dev/sda"),
    ]
    assert shared["metadata"] == {"hw:passthrough": "true"}  # attached on the SCSI bus

    spare = evs.get(volume_path(SPARE)).json()["volume"]
    assert (spare["status"], spare["attachments"]) == ("available", [])


@pytest.mark.parametrize("volume_id", [UNKNOWN, "not-a-uuid"])
def test_unknown_volume_is_item_not_found(evs: httpx.Client, volume_id: str) -> None:
    response = evs.get(volume_path(volume_id))
    assert response.status_code == 404
    assert response.json() == {
        "itemNotFound": {"code": 404, "message": f"Volume {volume_id} could not be found."}
    }
    assert HEX32.match(response.headers["X-Request-Id"])


def test_volume_route_is_signed_and_get_only(evs: httpx.Client, url: str) -> None:
    unsigned = httpx.get(url + volume_path(WEB1_DATA))
    assert (unsigned.status_code, unsigned.json()["error_code"]) == (401, "APIGW.0301")
    deleted = evs.delete(volume_path(WEB1_DATA))
    assert (deleted.status_code, deleted.json()["error_code"]) == (404, "APIGW.0101")
    other = evs.get(f"/v2/{'f' * 32}/cloudvolumes/{WEB1_DATA}")
    assert (other.status_code, other.json()["error"]["code"]) == (400, "Ecs.0023")

"""The emulator over real loopback HTTP, called with the project's own signer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from emulator import (
    DEMO_CREDENTIAL,
    EcsBackend,
    EmulatorConfig,
    EmulatorCredential,
    create_app,
    load_seed,
)
from handler.cloud import Credentials, SignerAuth
from handler.local._serve import BackgroundServer
from tests.support import (
    BATCH1_DATA,
    BATCH1_LOCKED,
    PID,
    SPARE,
    UNKNOWN,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
    WEB1_SYSTEM,
    WEB2,
    WEB2_DATA,
)

TEMPORARY = EmulatorCredential(
    "TEMPACCESSKEY0000000", "temp-secret-key-0123456789", PID, security_token="temp-token-abc"
)
OTHER_PID = "f" * 32
OTHER = EmulatorCredential("OTHERACCESSKEY000000", "other-secret-key-0123456789", OTHER_PID)
FAST = {"job_init_s": 0.02, "job_duration_s": 0.1, "job_retention_s": 86400.0, "max_clock_skew_s": 900}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
JOB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SERVER_PATH = f"/v1/{PID}/cloudservers/{WEB1}"
DETACH_PATH = f"{SERVER_PATH}/detachvolume/{WEB1_DATA}"
ATTACH_PATH = f"{SERVER_PATH}/attachvolume"
SECRETS = (DEMO_CREDENTIAL.secret_key, TEMPORARY.secret_key, OTHER.secret_key, "wrong-secret")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[EcsBackend, str]]:
    backend = EcsBackend.from_seed(
        load_seed(None),
        credentials=[DEMO_CREDENTIAL, TEMPORARY, OTHER],
        config=EmulatorConfig.model_validate(FAST),
    )
    with BackgroundServer(create_app(backend)) as server:
        yield backend, server.url


@pytest.fixture
def backend(served: tuple[EcsBackend, str]) -> EcsBackend:
    backend = served[0]
    backend.update_config(FAST)
    backend.reset()
    return backend


@pytest.fixture
def url(served: tuple[EcsBackend, str], backend: EcsBackend) -> str:
    return served[1]


def signer(credential: EmulatorCredential, **changes: Any) -> SignerAuth:
    fields: dict[str, Any] = {
        "access_key": credential.access_key,
        "secret_key": SecretStr(credential.secret_key),
        "project_id": credential.project_id,
        "security_token": SecretStr(credential.security_token) if credential.security_token else None,
    }
    fields.update(changes)
    return SignerAuth(Credentials(**fields))


@pytest.fixture
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, auth=signer(DEMO_CREDENTIAL)) as client:
        yield client


@pytest.fixture
def plain() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def signed_request(url: str, method: str, path: str, *, content: bytes = b"", **kwargs: Any) -> httpx.Request:
    request = httpx.Request(method, url + path, content=content, **kwargs)
    signer(DEMO_CREDENTIAL).sign_request(request)
    return request


def resend(
    request: httpx.Request, *, url: str | httpx.URL | None = None, content: bytes | None = None
) -> httpx.Request:
    """A copy of a signed request with its URL or body changed and its signature kept."""
    headers = httpx.Headers(request.headers)
    body = request.content if content is None else content
    if body:
        headers["Content-Length"] = str(len(body))
    return httpx.Request(request.method, url or request.url, headers=headers, content=body)


def sdk_date(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def assert_gateway_401(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error_code", "error_msg", "request_id"}
    assert body["error_code"] == "APIGW.0301"
    assert reason in body["error_msg"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert not any(secret in response.text for secret in SECRETS)


def assert_ecs_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert HEX32.match(response.headers["X-Request-Id"])
    return str(body["error"]["message"])


def wait_for_job(api: httpx.Client, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/v1/{PID}/jobs/{job_id}").json()
        if job["status"] in ("SUCCESS", "FAIL") or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


# -- signing ---------------------------------------------------------------------------------


def test_a_signed_call_works_with_a_fresh_request_id(api: httpx.Client) -> None:
    first, second = api.get(SERVER_PATH), api.get(SERVER_PATH)
    assert first.status_code == 200
    assert first.json()["server"]["id"] == WEB1
    ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    assert len(ids) == 2
    assert all(HEX32.match(i) for i in ids)


def test_unknown_access_key(url: str) -> None:
    unknown = EmulatorCredential("NOSUCHACCESSKEY00000", "whatever", PID)
    with httpx.Client(base_url=url, auth=signer(unknown)) as client:
        assert_gateway_401(client.get(SERVER_PATH), "unknown access key")


def test_wrong_secret_key(url: str) -> None:
    auth = signer(DEMO_CREDENTIAL, secret_key=SecretStr("wrong-secret"))
    with httpx.Client(base_url=url, auth=auth) as client:
        assert_gateway_401(client.get(SERVER_PATH), "verify aksk signature fail")


def test_tampered_query_is_refused_and_starts_nothing(
    url: str, plain: httpx.Client, backend: EcsBackend
) -> None:
    request = signed_request(url, "DELETE", DETACH_PATH, params={"delete_flag": "0"})
    tampered = resend(request, url=request.url.copy_with(query=b"delete_flag=1"))
    assert_gateway_401(plain.send(tampered), "verify aksk signature fail")
    assert backend.snapshot().jobs == ()
    assert plain.send(resend(request)).status_code == 200  # the untouched copy passes


def test_tampered_body(url: str, plain: httpx.Client) -> None:
    body = b'{"volumeAttachment": {"volumeId": "%s"}}' % SPARE.encode()
    request = signed_request(url, "POST", ATTACH_PATH, content=body)
    evil = body.replace(b"eeee", b"bbbb")
    assert_gateway_401(plain.send(resend(request, content=evil)), "verify aksk signature fail")


def test_tampered_path(url: str, plain: httpx.Client) -> None:
    request = signed_request(url, "GET", SERVER_PATH)
    moved = resend(request, url=url + SERVER_PATH.replace(WEB1, WEB2))
    assert_gateway_401(plain.send(moved), "verify aksk signature fail")


@pytest.mark.parametrize("minutes", [-16, 16])
def test_clock_skew_of_16_minutes(api: httpx.Client, minutes: int) -> None:
    stamp = sdk_date(datetime.now(timezone.utc) + timedelta(minutes=minutes))
    response = api.get(SERVER_PATH, headers={"X-Sdk-Date": stamp})
    assert_gateway_401(response, "request expired: X-Sdk-Date more than 15 minutes from server time")


def test_missing_authorization(url: str, plain: httpx.Client) -> None:
    assert_gateway_401(plain.get(url + SERVER_PATH), "missing authorization")


def test_security_token_credential(url: str) -> None:
    cases = [
        (signer(TEMPORARY, security_token=None), "missing X-Security-Token"),
        (signer(TEMPORARY, security_token=SecretStr("temp-token-xyz")), "invalid security token"),
    ]
    for auth, reason in cases:
        with httpx.Client(base_url=url, auth=auth) as client:
            assert_gateway_401(client.get(SERVER_PATH), reason)
    with httpx.Client(base_url=url, auth=signer(TEMPORARY)) as client:
        assert client.get(SERVER_PATH).status_code == 200


def test_project_mismatch_is_ecs_0023(api: httpx.Client, url: str) -> None:
    message = assert_ecs_error(api.get(f"/v1/{OTHER_PID}/cloudservers/{WEB1}"), 400, "Ecs.0023")
    assert "project" in message
    with httpx.Client(base_url=url, auth=signer(OTHER)) as other:
        assert_ecs_error(other.get(SERVER_PATH), 400, "Ecs.0023")
        assert_ecs_error(other.get(f"/v1/{OTHER_PID}/cloudservers/{WEB1}"), 404, "Ecs.0114")


# -- detach, attach, jobs --------------------------------------------------------------------


def test_full_detach_over_http(api: httpx.Client, url: str, plain: httpx.Client) -> None:
    response = api.delete(DETACH_PATH, params={"delete_flag": "0"})
    assert response.status_code == 200
    assert set(response.json()) == {"job_id"}
    job_id = response.json()["job_id"]
    assert HEX32.match(job_id)

    job = wait_for_job(api, job_id)
    assert job["status"] == "SUCCESS"
    assert (job["job_id"], job["job_type"], job["error_code"], job["fail_reason"]) == (
        job_id,
        "detachVolume",
        None,
        None,
    )
    assert JOB_TIME.match(job["begin_time"])
    assert JOB_TIME.match(job["end_time"])
    entities = job["entities"]
    assert (entities["server_id"], entities["sub_jobs_total"]) == (WEB1, 1)
    (sub_job,) = entities["sub_jobs"]
    assert set(sub_job) == {
        "status",
        "job_id",
        "job_type",
        "begin_time",
        "end_time",
        "error_code",
        "fail_reason",
        "entities",
    }
    assert (sub_job["status"], sub_job["entities"]) == ("SUCCESS", {"server_id": WEB1})

    devices = api.get(f"{SERVER_PATH}/block_device").json()["volumeAttachments"]
    assert [d["volumeId"] for d in devices] == [WEB1_SYSTEM, WEB1_LOGS]
    assert_ecs_error(api.get(f"{SERVER_PATH}/block_device/{WEB1_DATA}"), 404, "Ecs.0111")
    assert_ecs_error(api.delete(DETACH_PATH), 400, "Ecs.0111")

    ledger = plain.get(url + "/_emulator/calls").json()
    assert [(d["server_id"], d["volume_id"], d["job_id"]) for d in ledger["detaches"]] == [
        (WEB1, WEB1_DATA, job_id)
    ]
    first = ledger["calls"][0]
    assert (first["method"], first["path"], first["status"], first["job_id"]) == (
        "DELETE",
        DETACH_PATH,
        200,
        job_id,
    )
    assert (first["server_id"], first["volume_id"]) == (WEB1, WEB1_DATA)


def test_a_running_job_has_an_empty_end_time(api: httpx.Client, backend: EcsBackend) -> None:
    backend.update_config({"job_init_s": 0.0, "job_duration_s": 30.0})
    job_id = api.delete(DETACH_PATH).json()["job_id"]
    job = api.get(f"/v1/{PID}/jobs/{job_id}").json()
    assert (job["status"], job["end_time"], job["error_code"]) == ("RUNNING", "", None)
    busy = api.delete(f"{SERVER_PATH}/detachvolume/{WEB1_LOGS}")
    assert "retry later" in assert_ecs_error(busy, 501, "Ecs.0603")


def test_injected_failure_over_http(api: httpx.Client, url: str, plain: httpx.Client) -> None:
    fault = {"detach_fails_with": {"error_code": "Ecs.1000", "fail_reason": "EVS timeout"}}
    response = plain.patch(f"{url}/_emulator/volumes/{WEB1_DATA}", json=fault)
    assert response.status_code == 200
    assert response.json() == {"volume_id": WEB1_DATA, **fault, "job_duration_s": None}

    job = wait_for_job(api, api.delete(DETACH_PATH).json()["job_id"])
    assert (job["status"], job["error_code"], job["fail_reason"]) == ("FAIL", "Ecs.1000", "EVS timeout")
    sub_job = job["entities"]["sub_jobs"][0]
    assert sub_job["entities"] == {"server_id": WEB1, "errorcode_message": "EVS timeout"}
    assert plain.get(url + "/_emulator/calls").json()["detaches"] == []

    cleared = plain.patch(f"{url}/_emulator/volumes/{WEB1_DATA}", json={"detach_fails_with": None})
    assert cleared.json()["detach_fails_with"] is None
    assert wait_for_job(api, api.delete(DETACH_PATH).json()["job_id"])["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("path", "status", "code", "text"),
    [
        (f"/v1/{PID}/cloudservers/web-1/detachvolume/{WEB1_DATA}", 400, "Ecs.0005", "server_id"),
        (f"{SERVER_PATH}/detachvolume/bbbb", 400, "Ecs.0005", "volume_id"),
        (f"{DETACH_PATH}?delete_flag=yes", 400, "Ecs.0005", "delete_flag"),
        (DETACH_PATH.replace("aaaa", "ffff"), 404, "Ecs.0114", "does not exist"),
        (f"{SERVER_PATH}/detachvolume/{UNKNOWN}", 400, "Ecs.1000", "itemNotFound"),
        (f"{SERVER_PATH}/detachvolume/{WEB2_DATA}", 400, "Ecs.0111", "not attached"),
        (f"{SERVER_PATH}/detachvolume/{WEB1_SYSTEM}", 400, "Ecs.0100", "stopped"),
        (f"/v1/{PID}/cloudservers/{BATCH1_LOCKED}/detachvolume/{BATCH1_DATA}", 400, "Ecs.0605", "locked"),
    ],
)
def test_detach_errors_over_http(api: httpx.Client, path: str, status: int, code: str, text: str) -> None:
    assert text in assert_ecs_error(api.delete(path), status, code)


def test_attach_over_http(api: httpx.Client) -> None:
    response = api.post(ATTACH_PATH, json={"volumeAttachment": {"volumeId": SPARE, "device": "/dev/vdf"}})
    assert response.status_code == 200
    job = wait_for_job(api, response.json()["job_id"])
    assert (job["status"], job["job_type"]) == ("SUCCESS", "attachVolume")
    attached = api.get(f"{SERVER_PATH}/block_device/{SPARE}").json()["volumeAttachment"]
    assert (attached["device"], attached["bootIndex"]) == ("/dev/vdf", -1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "Ecs.0005"),
        (b"{}", "Ecs.0005"),
        (b'{"volumeAttachment": {"volumeId": 7}}', "Ecs.0005"),
        (b'{"volumeAttachment": {"volumeId": "%s"}}' % WEB2_DATA.encode(), "Ecs.0102"),
    ],
)
def test_attach_errors_over_http(api: httpx.Client, body: bytes, code: str) -> None:
    assert_ecs_error(api.post(ATTACH_PATH, content=body), 400, code)


def test_unknown_and_expired_jobs_are_404(api: httpx.Client, backend: EcsBackend) -> None:
    assert_ecs_error(api.get(f"/v1/{PID}/jobs/{'0' * 32}"), 404, "Common.0024")
    backend.update_config({"job_retention_s": 0.0})
    job_id = api.delete(DETACH_PATH).json()["job_id"]
    time.sleep(0.15)
    assert_ecs_error(api.get(f"/v1/{PID}/jobs/{job_id}"), 404, "Common.0024")


# -- read APIs -------------------------------------------------------------------------------


def test_server_shape(api: httpx.Client) -> None:
    server = api.get(SERVER_PATH).json()["server"]
    assert server["name"] == "web-1"
    assert server["status"] == "ACTIVE"
    assert server["OS-EXT-STS:task_state"] is None
    assert server["OS-EXT-STS:vm_state"] == "active"
    assert server["locked"] is False
    assert "auto-remediation=true" in server["tags"]
    assert isinstance(server["metadata"], dict)
    assert server["OS-EXT-SRV-ATTR:root_device_name"] == "/dev/vda"
    assert server["os-extended-volumes:volumes_attached"] == [
        {"id": WEB1_SYSTEM, "bootIndex": "0", "device": "/dev/vda", "delete_on_termination": "false"},
        {"id": WEB1_DATA, "bootIndex": "-1", "device": "/dev/vdb", "delete_on_termination": "false"},
        {"id": WEB1_LOGS, "bootIndex": "-1", "device": "/dev/vdc", "delete_on_termination": "false"},
    ]
    assert server["created"] == "2024-01-10T08:00:00Z"
    assert server["tenant_id"] == PID
    assert_ecs_error(api.get(SERVER_PATH.replace("aaaa", "ffff")), 404, "Ecs.0114")


def test_server_list_shape(api: httpx.Client) -> None:
    listing = api.get(f"/v1/{PID}/cloudservers/detail").json()
    assert listing["count"] == 6
    assert len(listing["servers"]) == 6
    assert {"id", "OS-EXT-SRV-ATTR:root_device_name"} <= set(listing["servers"][0])
    stopped = api.get(f"/v1/{PID}/cloudservers/detail", params={"status": "SHUTOFF"}).json()
    assert [(s["name"], s["OS-EXT-STS:vm_state"]) for s in stopped["servers"]] == [("db-1", "stopped")]
    page = api.get(f"/v1/{PID}/cloudservers/detail", params={"limit": 4, "offset": 2}).json()
    assert (page["count"], [s["name"] for s in page["servers"]]) == (6, ["cluster-1", "cluster-2"])
    named = api.get(f"/v1/{PID}/cloudservers/detail", params={"name": "web"}).json()
    assert named["count"] == 2
    bad = api.get(f"/v1/{PID}/cloudservers/detail", params={"limit": "many"})
    assert "limit" in assert_ecs_error(bad, 400, "Ecs.0005")


def test_block_device_shapes(api: httpx.Client) -> None:
    listing = api.get(f"{SERVER_PATH}/block_device").json()
    assert listing["attachableQuantity"] == {"free_scsi": 60, "free_blk": 21, "free_disk": 21}
    first = listing["volumeAttachments"][0]
    assert first == {
        "serverId": WEB1,
        "volumeId": WEB1_SYSTEM,
        "id": WEB1_SYSTEM,
        "device": "/dev/vda",
        "size": 40,
        "bootIndex": 0,
        "pciAddress": "0000:02:01.0",
        "bus": "virtio",
    }
    one = api.get(f"{SERVER_PATH}/block_device/{WEB1_DATA}").json()
    assert one["volumeAttachment"] == listing["volumeAttachments"][1]
    assert one["volumeAttachment"]["size"] == 100


def test_unknown_routes_and_methods_are_apigw_0101(api: httpx.Client, url: str, plain: httpx.Client) -> None:
    for response in (
        api.get(f"/v2/{PID}/cloudservers/{WEB1}"),
        api.put(DETACH_PATH),
        api.get(DETACH_PATH),
        api.get(SERVER_PATH + "/"),
        plain.get(url + "/"),
        plain.delete(url + "/_emulator/state"),
    ):
        assert response.status_code == 404
        body = response.json()
        assert body["error_code"] == "APIGW.0101"
        assert body["error_msg"] == "The API does not exist or has not been published in the environment"
        assert body["request_id"] == response.headers["X-Request-Id"]


# -- admin API -------------------------------------------------------------------------------


def test_admin_state_and_reset(api: httpx.Client, url: str, plain: httpx.Client) -> None:
    state = plain.get(url + "/_emulator/state").json()
    assert set(state) == {
        "now",
        "config",
        "credentials",
        "servers",
        "volumes",
        "attachments",
        "jobs",
        "faults",
    }
    assert len(state["servers"]) == 6
    assert state["config"] == FAST
    assert state["credentials"][0] == f"AK DEMOACCESSKEY0000000, project {PID}"
    assert not any(secret in plain.get(url + "/_emulator/state").text for secret in SECRETS)

    wait_for_job(api, api.delete(DETACH_PATH).json()["job_id"])
    state = plain.get(url + "/_emulator/state").json()
    assert [j["status"] for j in state["jobs"]] == ["SUCCESS"]
    assert {"server_id": WEB1, "volume_id": WEB1_DATA} not in [
        {"server_id": a["server_id"], "volume_id": a["volume_id"]} for a in state["attachments"]
    ]

    reset = plain.post(url + "/_emulator/reset")
    assert reset.status_code == 200
    assert reset.json()["jobs"] == []
    assert api.get(f"{SERVER_PATH}/block_device/{WEB1_DATA}").status_code == 200
    assert plain.get(url + "/_emulator/calls").json()["calls"][0]["path"].endswith(WEB1_DATA)


def test_admin_config(url: str, plain: httpx.Client, backend: EcsBackend) -> None:
    response = plain.patch(url + "/_emulator/config", json={"job_duration_s": 0.5})
    assert response.status_code == 200
    assert response.json() == {**FAST, "job_duration_s": 0.5}
    assert backend.config.job_duration_s == 0.5
    for bad in ({"nope": 1}, {"job_init_s": -1}, [1]):
        assert plain.patch(url + "/_emulator/config", json=bad).status_code == 400
    assert plain.patch(url + "/_emulator/config", content=b"{").status_code == 400


def test_admin_volume_duration_and_unknown_volume(api: httpx.Client, url: str, plain: httpx.Client) -> None:
    response = plain.patch(f"{url}/_emulator/volumes/{WEB1_DATA}", json={"job_duration_s": 30})
    assert response.json()["job_duration_s"] == 30
    job_id = api.delete(DETACH_PATH).json()["job_id"]
    time.sleep(0.15)
    assert api.get(f"/v1/{PID}/jobs/{job_id}").json()["status"] == "RUNNING"
    missing = plain.patch(f"{url}/_emulator/volumes/{UNKNOWN}", json={"job_duration_s": 1})
    assert missing.status_code == 404
    assert plain.patch(f"{url}/_emulator/volumes/{WEB1_DATA}", json={"x": 1}).status_code == 400


def test_ledger_records_refused_calls_too(api: httpx.Client, url: str, plain: httpx.Client) -> None:
    plain.get(url + SERVER_PATH)
    api.get(f"/v1/{PID}/nothing")
    calls = plain.get(url + "/_emulator/calls").json()["calls"]
    assert [(c["status"], c["error_code"]) for c in calls] == [(401, "APIGW.0301"), (404, "APIGW.0101")]
    assert all(HEX32.match(c["request_id"]) for c in calls)


def test_x_project_id_header_must_match_the_url(url: str) -> None:
    with httpx.Client(base_url=url, auth=signer(DEMO_CREDENTIAL, project_id=OTHER_PID)) as client:
        assert_ecs_error(client.get(SERVER_PATH), 400, "Ecs.0023")


def test_an_internal_error_is_a_json_500(
    api: httpx.Client, backend: EcsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(backend, "get_server", broken)
    assert "internal error" in assert_ecs_error(api.get(SERVER_PATH), 500, "Ecs.0615")

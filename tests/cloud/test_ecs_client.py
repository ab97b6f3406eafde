"""The ECS client against the emulator over loopback: every call, typed errors, timeouts."""

from __future__ import annotations

import socket
import socketserver
import threading

import httpx
import pytest
from pydantic import SecretStr

from handler.cloud import ApiError, EcsClient, TransportError, endpoint
from handler.core.jobs import JobStatus
from handler.settings import CloudCredentials, Settings
from tests.conftest import DEMO_CREDENTIALS, Emulator
from tests.support import PID, WEB1, WEB1_DATA


@pytest.fixture
def ecs(emulator: Emulator) -> EcsClient:
    return EcsClient(emulator.url, DEMO_CREDENTIALS)


def test_servers_block_devices_detach_and_job(ecs: EcsClient) -> None:
    server = ecs.show_server(WEB1)
    assert (server.name, server.status, server.root_device_name) == ("web-1", "ACTIVE", "/dev/vda")
    assert "auto-remediation=true" in server.tags
    assert any(v.id == WEB1_DATA and v.boot_index == "-1" for v in server.volumes_attached)
    assert WEB1 in {s.id for s in ecs.list_servers()}
    assert [s.id for s in ecs.list_servers(name="web-1")] == [WEB1]
    devices = {d.volume_id: d for d in ecs.list_block_devices(WEB1)}
    assert devices[WEB1_DATA].device == "/dev/vdb"

    answer = ecs.detach_volume(WEB1, WEB1_DATA)
    assert len(answer.job_id) == 32
    assert answer.request_id
    assert answer.status_code == 200
    job = ecs.show_job(answer.job_id)
    assert job.status in (JobStatus.INIT, JobStatus.RUNNING)
    assert job.end_time is None  # "" while running, parsed leniently


def test_errors_are_typed_with_code_and_request_id(ecs: EcsClient) -> None:
    with pytest.raises(ApiError) as caught:
        ecs.show_server("1b3c5e7f-0000-4000-8000-0000deadbeef")
    assert (caught.value.status, caught.value.code) == (404, "Ecs.0114")
    assert caught.value.request_id

    with pytest.raises(ApiError) as caught:
        ecs.show_job("0" * 32)
    assert caught.value.status == 404


def test_a_wrong_secret_is_a_gateway_error(emulator: Emulator) -> None:
    wrong = DEMO_CREDENTIALS.model_copy(update={"secret_key": SecretStr("not-the-key")})
    with EcsClient(emulator.url, wrong) as ecs, pytest.raises(ApiError) as caught:
        ecs.show_server(WEB1)
    assert (caught.value.status, caught.value.code) == (401, "APIGW.0301")
    assert "not-the-key" not in str(caught.value)


def test_no_answer_is_a_transport_error_within_the_timeout() -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen()
        url = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
        with (
            EcsClient(url, DEMO_CREDENTIALS, timeout=httpx.Timeout(0.3)) as ecs,
            pytest.raises(TransportError) as caught,
        ):
            ecs.show_job("f" * 32)
    assert caught.value.timeout


def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with (
        EcsClient(f"http://127.0.0.1:{port}", DEMO_CREDENTIALS) as ecs,
        pytest.raises(TransportError) as caught,
    ):
        ecs.detach_volume(WEB1, WEB1_DATA)
    assert not caught.value.timeout


def test_a_project_is_required() -> None:
    no_project = DEMO_CREDENTIALS.model_copy(update={"project_id": None})
    with EcsClient("http://127.0.0.1:9", no_project) as ecs, pytest.raises(ValueError, match="project"):
        ecs.show_job("x")
    with EcsClient("http://127.0.0.1:9", no_project) as ecs:
        assert ecs.endpoint == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("cloud", "url"),
    [
        ("huaweicloud", "https://ecs.ap-southeast-1.myhuaweicloud.com"),
        ("huaweicloud-eu", "https://ecs.ap-southeast-1.myhuaweicloud.eu"),
        ("otc", "https://ecs.ap-southeast-1.otc.t-systems.com"),
        ("flexibleengine", "https://ecs.ap-southeast-1.prod-cloud-ocb.orange-business.com"),
    ],
)
def test_endpoints_per_cloud(cloud: str, url: str) -> None:
    assert endpoint("ecs", "ap-southeast-1", cloud) == url  # type: ignore[arg-type]
    assert Settings(region="ap-southeast-1", cloud=cloud).ecs_url() == url  # type: ignore[arg-type]


def test_endpoint_errors_and_overrides() -> None:
    with pytest.raises(ValueError, match="invalid region"):
        endpoint("ecs", "eu-de/evil", "otc")
    assert (
        Settings(region="eu-de", ecs_endpoint="http://127.0.0.1:8081/").ecs_url() == "http://127.0.0.1:8081"
    )
    assert Settings().ecs_url() is None


def test_credentials_come_from_the_sdk_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK1")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "very-secret")
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PID)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", "t0ken-value")
    credentials = CloudCredentials().credentials()
    assert credentials is not None
    assert (credentials.access_key, credentials.project_id) == ("AK1", PID)
    assert credentials.security_token is not None
    assert credentials.security_token.get_secret_value() == "t0ken-value"
    assert "very-secret" not in repr(credentials)
    assert "t0ken-value" not in repr(credentials)
    monkeypatch.delenv("HUAWEICLOUD_SDK_SK")
    assert CloudCredentials().credentials() is None


def test_the_client_neither_keeps_nor_sends_cookies() -> None:
    """Every call is authenticated by its signature; a gateway's cookie is not echoed back."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"job_id": "j1"}, headers={"Set-Cookie": "session=abc; Path=/"})

    url = "https://ecs.ap-southeast-1.myhuaweicloud.com"
    with EcsClient(url, DEMO_CREDENTIALS, transport=httpx.MockTransport(handle)) as client:
        client.detach_volume(WEB1, WEB1_DATA)
        client.detach_volume(WEB1, WEB1_DATA)
    assert len(seen) == 2
    assert "cookie" not in seen[1].headers


def test_query_parameters_that_need_encoding_go_out_signed(ecs: EcsClient) -> None:
    # The query is written in its canonical form (sorted, percent-encoded, ``~`` bare) as the URL
    # is built; the emulator checks the signature against the query it received.
    assert ecs.list_servers(name="web 1&x=~ü", status="ACTIVE") == []
    assert [s.id for s in ecs.list_servers(name="web-1", status="ACTIVE")] == [WEB1]


class _HeaderRecorder(socketserver.StreamRequestHandler):
    """Keeps the raw head of each request it reads; answers 404."""

    heads: list[list[bytes]]

    def handle(self) -> None:
        head = [self.rfile.readline(65_537)]
        while head[-1] not in (b"\r\n", b"\n", b""):
            head.append(self.rfile.readline(65_537))
        type(self).heads.append(head[1:-1])
        body = b'{"error": {"code": "Ecs.0114", "message": "not here"}}'
        self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n")
        self.wfile.write(b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_a_call_sends_the_headers_it_means_and_signs_them() -> None:
    """On the wire (a loopback server reads the raw request): no header that says nothing
    (httpx's "Accept: */*", "Connection: keep-alive"), and every one the API reads is signed."""
    heads: list[list[bytes]] = []
    handler = type("Recorder", (_HeaderRecorder,), {"heads": heads})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with EcsClient(url, DEMO_CREDENTIALS) as ecs, pytest.raises(ApiError):
            ecs.show_server(WEB1)
        server.shutdown()
    (head,) = heads
    headers = dict(line.decode().rstrip("\r\n").split(": ", 1) for line in head)
    names = {name.lower() for name in headers}
    assert names == {
        *("host", "accept-encoding", "user-agent", "content-type"),
        *("x-sdk-date", "x-project-id", "authorization"),
    }
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert signed.split(";") == ["content-type", "host", "x-project-id", "x-sdk-date"]


def test_x_project_id_names_the_project_of_the_path_not_the_credentials_default() -> None:
    """The API wants X-Project-Id equal to the project in the path (AK/SK requests): a call for
    another project of the account says that project, signed; one for the default says it too."""
    heads: list[list[bytes]] = []
    handler = type("Recorder", (_HeaderRecorder,), {"heads": heads})
    other = "f" * 32
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with EcsClient(url, DEMO_CREDENTIALS) as ecs:
            with pytest.raises(ApiError):
                ecs.show_server(WEB1, project_id=other)
            with pytest.raises(ApiError):
                ecs.show_server(WEB1)
        server.shutdown()
    sent = []
    for head in heads:
        headers = {k.lower(): v for k, v in (line.decode().rstrip("\r\n").split(": ", 1) for line in head)}
        assert "x-project-id" in headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        sent.append(headers["x-project-id"])
    assert sent == [other, DEMO_CREDENTIALS.project_id]

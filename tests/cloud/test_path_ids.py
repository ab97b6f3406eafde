"""Ids become path segments of signed calls: a hostile one is refused before anything is sent.

httpx percent-encodes each segment, then removes dot segments: a job id of ``..`` once turned
``GET /v1/{project}/jobs/..`` into a signed ``GET /v1/{project}``. A loopback server records the
raw request line of everything that reaches it; the emulator checks the signature of what does.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterator

import pytest

from handler.cloud import ApiError, EcsClient, EvsClient, InvalidId, SmnClient
from tests.conftest import DEMO_CREDENTIALS, Emulator
from tests.support import PID, WEB1, WEB1_DATA

HOSTILE = [".", "..", "a/b", "%2e%2e", "", "../..", "ｆ" * 32, "٠" * 32, "f" * 32 + "\n", "f" * 100_000]
JOB = "ff80808288d41e1b018917ae93d3044c"


class _Recorder(socketserver.StreamRequestHandler):
    lines: list[bytes]

    def handle(self) -> None:
        request_line = self.rfile.readline(65_537)
        while self.rfile.readline(65_537) not in (b"\r\n", b"\n", b""):
            pass
        type(self).lines.append(request_line)
        body = b'{"error": {"code": "Ecs.0114", "message": "not here"}}'
        self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n")
        self.wfile.write(b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server that records each raw request line it receives."""
    lines: list[bytes] = []
    handler = type("Recorder", (_Recorder,), {"lines": lines})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        # a short poll interval: shutdown() waits for it, once per test (80 of them)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}", lines
        server.shutdown()


Call = Callable[[EcsClient, EvsClient, SmnClient, str], object]
CALLS: dict[str, tuple[str, Call]] = {
    "show_job": ("job_id", lambda ecs, evs, smn, bad: ecs.show_job(bad)),
    "show_job(project)": ("project_id", lambda ecs, evs, smn, bad: ecs.show_job(JOB, project_id=bad)),
    "show_server": ("server_id", lambda ecs, evs, smn, bad: ecs.show_server(bad)),
    "block_devices": ("server_id", lambda ecs, evs, smn, bad: ecs.list_block_devices(bad)),
    "detach(server)": ("server_id", lambda ecs, evs, smn, bad: ecs.detach_volume(bad, WEB1_DATA)),
    "detach(volume)": ("volume_id", lambda ecs, evs, smn, bad: ecs.detach_volume(WEB1, bad)),
    "show_volume": ("volume_id", lambda ecs, evs, smn, bad: evs.show_volume(bad)),
    "publish": ("topic_urn", lambda ecs, evs, smn, bad: smn.publish(bad, message="m")),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("bad", HOSTILE, ids=lambda v: repr(v[:8]) + f"…{len(v)}")
def test_a_hostile_id_is_refused_and_nothing_is_sent(
    recorder: tuple[str, list[bytes]], call: str, bad: str
) -> None:
    url, lines = recorder
    kind, make_call = CALLS[call]
    with (
        EcsClient(url, DEMO_CREDENTIALS) as ecs,
        EvsClient(url, DEMO_CREDENTIALS) as evs,
        SmnClient(url, DEMO_CREDENTIALS) as smn,
        pytest.raises(InvalidId) as caught,
    ):
        make_call(ecs, evs, smn, bad)
    assert caught.value.kind == kind
    assert kind in str(caught.value)
    assert len(str(caught.value)) < 200  # a 100,000-character id is not echoed whole
    assert lines == []


def test_a_valid_id_is_sent_and_signed_as_the_exact_path(
    recorder: tuple[str, list[bytes]], emulator: Emulator
) -> None:
    url, lines = recorder
    with EcsClient(url, DEMO_CREDENTIALS) as ecs, pytest.raises(ApiError):
        ecs.show_job(JOB)
    assert lines == [f"GET /v1/{PID}/jobs/{JOB} HTTP/1.1\r\n".encode()]

    # The emulator verifies the signature over the path it received: not 401, but "no such job".
    with EcsClient(emulator.url, DEMO_CREDENTIALS) as ecs, pytest.raises(ApiError) as caught:
        ecs.show_job(JOB)
    assert (caught.value.status, caught.value.code) == (404, "Common.0024")
    calls = emulator.admin("GET", "calls")["calls"]
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [("GET", f"/v1/{PID}/jobs/{JOB}", 404)]


def test_a_hostile_job_id_reaches_no_cloud_path(emulator: Emulator) -> None:
    """The old failure, end to end: ``..`` must not become a signed ``GET /v1/{project}``."""
    with EcsClient(emulator.url, DEMO_CREDENTIALS) as ecs:
        for bad in ("..", "."):
            with pytest.raises(InvalidId):
                ecs.show_job(bad)
    assert emulator.admin("GET", "calls")["calls"] == []

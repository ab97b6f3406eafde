"""Fault injection: every fault kind over real loopback HTTP, seeded, plus the draws themselves."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from emulator import (
    DEMO_CREDENTIAL,
    EcsBackend,
    EmulatorConfig,
    EmulatorCredential,
    FaultConfig,
    FaultConfigError,
    create_app,
    faults_from_env,
    load_seed,
)
from emulator.faults import FaultInjector, LogNormal, Uniform, sample
from emulator.models import FAIL, SUCCESS
from handler.cloud import Credentials, SignerAuth
from handler.local._serve import BackgroundServer
from tests.support import (
    DB1_DATA,
    DB1_SHUTOFF,
    PID,
    WEB1,
    WEB1_DATA,
    WEB2,
    WEB2_DATA,
    FakeClock,
)

SECOND = EmulatorCredential("SECONDACCESSKEY00000", "second-secret-key-0123456789", PID)
FAST: dict[str, Any] = {"job_init_s": 0.02, "job_duration_s": 0.1, "job_retention_s": 86400.0}
SERVER_PATH = f"/v1/{PID}/cloudservers/{WEB1}"
DEVICES_PATH = f"{SERVER_PATH}/block_device"
DETACH_PATH = f"{SERVER_PATH}/detachvolume/{WEB1_DATA}"
VOLUME_PATH = f"/v2/{PID}/cloudvolumes/{WEB1_DATA}"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[EcsBackend, str]]:
    backend = EcsBackend.from_seed(
        load_seed(None), credentials=[DEMO_CREDENTIAL, SECOND], config=EmulatorConfig.model_validate(FAST)
    )
    with BackgroundServer(create_app(backend)) as server:
        yield backend, server.url


@pytest.fixture
def backend(served: tuple[EcsBackend, str]) -> EcsBackend:
    backend = served[0]
    backend.update_config({**FAST, "faults": FaultConfig()})
    backend.reset()
    return backend


@pytest.fixture
def url(served: tuple[EcsBackend, str], backend: EcsBackend) -> str:
    return served[1]


def signer(credential: EmulatorCredential) -> SignerAuth:
    return SignerAuth(
        Credentials(
            access_key=credential.access_key,
            secret_key=SecretStr(credential.secret_key),
            project_id=credential.project_id,
        )
    )


@pytest.fixture
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, auth=signer(DEMO_CREDENTIAL), timeout=5) as client:
        yield client


@pytest.fixture
def admin(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url + "/_emulator", timeout=5) as client:
        yield client


def put_faults(admin: httpx.Client, faults: dict[str, Any]) -> dict[str, Any]:
    response = admin.put("/faults", json=faults)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ledger(admin: httpx.Client, calls: int) -> dict[str, Any]:
    """The ledger once it holds ``calls`` calls (a hung call is recorded when it ends)."""
    deadline = time.monotonic() + 3
    while True:
        answer: dict[str, Any] = admin.get("/calls").json()
        if len(answer["calls"]) >= calls or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def wait_for_job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        job: dict[str, Any] = api.get(f"/v1/{PID}/jobs/{job_id}").json()
        if job["status"] in (SUCCESS, FAIL) or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def device_ids(api: httpx.Client) -> list[str]:
    return [d["volumeId"] for d in api.get(DEVICES_PATH).json()["volumeAttachments"]]


def job_seconds(job: dict[str, Any]) -> float:
    begin, end = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("begin_time", "end_time"))
    return (end - begin).total_seconds()


# -- configuration: admin API, environment, EmulatorConfig -----------------------------------


def test_admin_faults_round_trip(admin: httpx.Client, backend: EcsBackend) -> None:
    assert admin.get("/faults").json() == FaultConfig().model_dump(mode="json")
    faults = {
        "seed": 3,
        "latency_s": 0.01,
        "jitter_s": 0.0,
        "rate_limit": {"rate": 100, "burst": None, "per_access_key": True},
        "errors": [{"rate": 0.1, "status": 503, "code": "APIG.0202", "methods": ["delete"]}],
        "hangs": [{"rate": 0.1, "seconds": 5, "paths": "/jobs/"}],
        "drops": [{"rate": 0.1, "after_commit": True}],
        "job_failure": {"rate": 0.2},
        "settle_lag_s": {"kind": "lognormal", "median": 2, "sigma": 0.5},
    }
    stored = put_faults(admin, faults)
    assert stored == admin.get("/faults").json()
    assert stored["errors"][0]["methods"] == ["DELETE"]
    assert stored["job_failure"] == {
        "rate": 0.2,
        "error_code": "Ecs.1000",
        "fail_reason": "Nova backend timeout",
    }
    assert stored["settle_lag_s"] == {"kind": "lognormal", "median": 2.0, "sigma": 0.5, "max": 600.0}
    assert backend.config.faults.rate_limit is not None

    # The faults live apart from the other settings, and a config change keeps them.
    config = admin.patch("/config", json={"job_init_s": 0.01}).json()
    assert "faults" not in config
    assert "faults" not in admin.get("/state").json()["config"]
    assert admin.get("/faults").json() == stored

    assert admin.delete("/faults").json() == FaultConfig().model_dump(mode="json")
    assert backend.config.faults == FaultConfig()


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"errors": [{"rate": 1.5, "status": 503}]}, "errors.0.rate"),
        ({"errors": [{"rate": 0.5, "status": 200}]}, "errors.0.status"),
        ({"hangs": [{"rate": 0.5, "seconds": 1, "paths": "("}]}, "not a regular expression"),
        ({"settle_lag_s": {"kind": "uniform", "min": 3, "max": 1}}, "min must not exceed max"),
        ({"settle_lag_s": {"kind": "gamma"}}, "settle_lag_s"),
        ({"no_such_fault": 1}, "no_such_fault"),
        ([1], "JSON object"),
    ],
)
def test_admin_refuses_bad_faults(admin: httpx.Client, body: Any, text: str) -> None:
    response = admin.put("/faults", json=body)
    assert response.status_code == 400
    assert text in response.json()["error"]["message"]
    assert admin.get("/faults").json() == FaultConfig().model_dump(mode="json")


def test_faults_from_env() -> None:
    assert faults_from_env({}) == FaultConfig()
    assert faults_from_env({"ECS_EMULATOR_FAULTS": "  "}) == FaultConfig()
    parsed = faults_from_env({"ECS_EMULATOR_FAULTS": '{"seed": 1, "drops": [{"rate": 0.5}]}'})
    assert (parsed.seed, parsed.drops[0].rate) == (1, 0.5)
    cases = {
        "{nope": "ECS_EMULATOR_FAULTS is not valid JSON",
        "[]": "ECS_EMULATOR_FAULTS must be a JSON object",
        '{"errors": [{"rate": 2, "status": 503}]}': "ECS_EMULATOR_FAULTS: errors.0.rate: Input should be",
        '{"latency": 1}': "ECS_EMULATOR_FAULTS: latency: Extra inputs are not permitted",
    }
    for text, message in cases.items():
        with pytest.raises(FaultConfigError) as caught:
            faults_from_env({"ECS_EMULATOR_FAULTS": text})
        assert str(caught.value).startswith(message), str(caught.value)


def test_emulator_config_carries_faults_and_duration_distributions() -> None:
    config = EmulatorConfig(faults=FaultConfig(seed=1), job_duration_s=Uniform(kind="uniform", min=1, max=2))
    assert config.updated({"job_init_s": 0.1}).faults == FaultConfig(seed=1)
    assert config.model_dump()["job_duration_s"] == {"kind": "uniform", "min": 1.0, "max": 2.0}
    assert "faults" not in config.model_dump()
    with pytest.raises(ValidationError):
        EmulatorConfig.model_validate({"job_duration_s": {"kind": "lognormal", "median": 0, "sigma": 1}})


# -- injected errors -------------------------------------------------------------------------


def test_error_rate_is_seeded_and_within_tolerance(api: httpx.Client, admin: httpx.Client) -> None:
    faults = {"seed": 11, "errors": [{"rate": 0.3, "status": 503, "code": "APIG.0202"}]}
    put_faults(admin, faults)
    first = [api.get(SERVER_PATH).status_code for _ in range(200)]
    assert set(first) == {200, 503}
    assert 40 <= first.count(503) <= 80
    put_faults(admin, faults)  # replacing the faults starts the draws afresh
    assert [api.get(SERVER_PATH).status_code for _ in range(200)] == first
    summary = admin.get("/calls").json()["summary"]
    assert summary["by_fault"] == {"none": 2 * first.count(200), "error": 2 * first.count(503)}
    assert summary["reached_backend"] == 2 * first.count(200)


@pytest.mark.parametrize(
    ("rule", "shape", "code", "message", "retry_after"),
    [
        ({"status": 429}, "gateway", "APIGW.0308", "policy user over ratelimit", "1"),
        ({"status": 504, "code": "APIG.0201"}, "gateway", "APIG.0201", "Backend timeout.", None),
        ({"status": 501, "code": "Ecs.0603", "message": "busy"}, "ecs", "Ecs.0603", "busy", None),
        ({"status": 502}, "plain", None, "502 Bad Gateway", None),
        ({"status": 503, "retry_after_s": 7}, "plain", None, "503 Service Unavailable", "7"),
    ],
)
def test_error_body_follows_the_code_family(
    api: httpx.Client,
    admin: httpx.Client,
    rule: dict[str, Any],
    shape: str,
    code: str | None,
    message: str,
    retry_after: str | None,
) -> None:
    put_faults(admin, {"errors": [{"rate": 1, **rule}]})
    response = api.get(SERVER_PATH)
    assert response.status_code == rule["status"]
    assert response.headers.get("Retry-After") == retry_after
    request_id = response.headers["X-Request-Id"]
    if shape == "gateway":
        body = response.json()
        assert (body["error_code"], body["request_id"]) == (code, request_id)
        assert body["error_msg"].startswith(message)
    elif shape == "ecs":
        assert response.json() == {"error": {"code": code, "message": message}}
    else:
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == message


def test_rules_match_methods_and_paths(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(
        admin,
        {
            "errors": [
                {"rate": 1, "status": 503, "methods": ["DELETE"]},
                {"rate": 1, "status": 500, "paths": "/cloudvolumes/"},
            ]
        },
    )
    assert api.get(SERVER_PATH).status_code == 200
    assert api.get(VOLUME_PATH).status_code == 500
    assert api.delete(DETACH_PATH).status_code == 503


def test_an_injected_error_does_not_detach(
    api: httpx.Client, admin: httpx.Client, backend: EcsBackend
) -> None:
    put_faults(admin, {"errors": [{"rate": 1, "status": 503, "code": "APIG.0202", "methods": ["DELETE"]}]})
    for _ in range(3):
        assert api.delete(DETACH_PATH).status_code == 503
    assert backend.snapshot().jobs == ()
    assert WEB1_DATA in device_ids(api)
    answer = ledger(admin, 4)
    detach = answer["calls"][0]
    assert (detach["status"], detach["error_code"], detach["fault"], detach["reached_backend"]) == (
        503,
        "APIG.0202",
        "error",
        False,
    )
    assert answer["summary"]["detach_calls"] == {"total": 3, "reached_backend": 0, "jobs_started": 0}


def test_an_error_after_commit_detaches_anyway(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"errors": [{"rate": 1, "status": 500, "code": "Ecs.0615", "after_commit": True}]})
    response = api.delete(DETACH_PATH)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "Ecs.0615"
    admin.delete("/faults")
    time.sleep(0.2)
    assert WEB1_DATA not in device_ids(api)
    answer = ledger(admin, 2)
    detach = answer["calls"][0]
    assert (detach["fault"], detach["reached_backend"], detach["error_code"]) == (
        "error_after_commit",
        True,
        "Ecs.0615",
    )
    assert [d["job_id"] for d in answer["detaches"]] == [detach["job_id"]]
    summary = answer["summary"]
    assert summary["detach_calls"] == {"total": 1, "reached_backend": 1, "jobs_started": 1}
    assert (summary["detaches"], summary["by_status"]) == (1, {"500": 1, "200": 1})


# -- dropped connections, hangs, latency -----------------------------------------------------


def test_a_dropped_connection_answers_nothing_and_does_not_detach(
    api: httpx.Client, admin: httpx.Client, backend: EcsBackend
) -> None:
    put_faults(admin, {"drops": [{"rate": 1, "methods": ["DELETE"]}]})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        api.delete(DETACH_PATH)
    assert api.get(SERVER_PATH).status_code == 200  # the client reconnects
    assert backend.snapshot().jobs == ()
    calls = ledger(admin, 2)["calls"]
    assert [(c["status"], c["fault"], c["reached_backend"]) for c in calls] == [
        (0, "drop", False),
        (200, None, True),
    ]


def test_a_drop_after_commit_detaches_anyway(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"drops": [{"rate": 1, "methods": ["DELETE"], "after_commit": True}]})
    with pytest.raises(httpx.RemoteProtocolError):
        api.delete(DETACH_PATH)
    (call,) = ledger(admin, 1)["calls"]
    assert (call["status"], call["fault"], call["reached_backend"]) == (0, "drop_after_commit", True)
    assert wait_for_job(api, call["job_id"])["status"] == SUCCESS
    assert WEB1_DATA not in device_ids(api)


def test_a_hang_longer_than_the_client_timeout(
    api: httpx.Client, admin: httpx.Client, backend: EcsBackend
) -> None:
    put_faults(admin, {"hangs": [{"rate": 1, "seconds": 5, "methods": ["DELETE"]}]})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.delete(DETACH_PATH, timeout=0.2)
    assert time.monotonic() - started < 1
    (call,) = ledger(admin, 1)["calls"]  # recorded as soon as the client left, not after 5 s
    assert (call["status"], call["fault"], call["reached_backend"]) == (0, "hang", False)
    assert backend.snapshot().jobs == ()


def test_a_hang_after_commit_detaches_while_the_client_times_out(
    api: httpx.Client, admin: httpx.Client
) -> None:
    put_faults(admin, {"hangs": [{"rate": 1, "seconds": 5, "methods": ["DELETE"], "after_commit": True}]})
    with pytest.raises(httpx.ReadTimeout):
        api.delete(DETACH_PATH, timeout=0.2)
    (call,) = ledger(admin, 1)["calls"]
    assert (call["status"], call["fault"], call["reached_backend"]) == (200, "hang_after_commit", True)
    assert wait_for_job(api, call["job_id"])["status"] == SUCCESS


def test_a_short_hang_answers_late(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"hangs": [{"rate": 1, "seconds": 0.15}]})
    started = time.monotonic()
    assert api.get(SERVER_PATH).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_latency_and_jitter(api: httpx.Client, admin: httpx.Client) -> None:
    def timed() -> float:
        started = time.monotonic()
        assert api.get(SERVER_PATH).status_code == 200
        return time.monotonic() - started

    baseline = min(timed() for _ in range(5))
    put_faults(admin, {"seed": 1, "latency_s": 0.05, "jitter_s": 0.02})
    delayed = [timed() for _ in range(10)]
    assert min(delayed) >= 0.05
    assert statistics.median(delayed) < baseline + 0.07 + 0.05
    assert max(delayed) - min(delayed) > 0.002  # the jitter varies


# -- rate limit ------------------------------------------------------------------------------


def test_rate_limit_answers_429_then_recovers(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"rate_limit": {"rate": 5, "burst": 2}})
    assert [api.get(SERVER_PATH).status_code for _ in range(2)] == [200, 200]
    refused = api.get(SERVER_PATH)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {
        "error_code": "APIGW.0308",
        "error_msg": "policy user over ratelimit,limit:5,time:1 second",
        "request_id": refused.headers["X-Request-Id"],
    }
    time.sleep(0.25)  # one token back after 0.2 s
    assert api.get(SERVER_PATH).status_code == 200
    summary = ledger(admin, 4)["summary"]
    assert summary["by_status"] == {"200": 3, "429": 1}
    assert summary["by_fault"] == {"none": 3, "rate_limit": 1}


def test_rate_limit_per_access_key(api: httpx.Client, admin: httpx.Client, url: str) -> None:
    put_faults(admin, {"rate_limit": {"rate": 0.5, "burst": 1, "per_access_key": True}})
    assert api.get(SERVER_PATH).status_code == 200
    refused = api.get(SERVER_PATH)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "2")
    with httpx.Client(base_url=url, auth=signer(SECOND), timeout=5) as other:
        assert other.get(SERVER_PATH).status_code == 200


def test_rate_limit_comes_after_the_signature_check(admin: httpx.Client, url: str) -> None:
    put_faults(admin, {"rate_limit": {"rate": 1, "burst": 1}})
    unsigned = httpx.get(url + SERVER_PATH, timeout=5)
    assert unsigned.json()["error_code"] == "APIGW.0301"
    assert ledger(admin, 1)["calls"][0]["reached_backend"] is False


def test_token_bucket_on_a_fake_clock() -> None:
    clock = FakeClock()
    injector = FaultInjector(FaultConfig.model_validate({"rate_limit": {"rate": 2, "burst": 3}}), clock)
    assert [injector.throttle("AK") for _ in range(3)] == [None, None, None]
    refused = injector.throttle("AK")
    assert refused is not None
    assert (refused.retry_after_s, refused.message) == (1, "policy user over ratelimit,limit:2,time:1 second")
    clock.advance(0.5)
    assert injector.throttle("AK") is None
    assert injector.throttle("AK") is not None
    clock.advance(10)  # refills up to the burst only
    assert [injector.throttle("AK") is None for _ in range(4)] == [True, True, True, False]


# -- jobs: durations, failures, settle lag ---------------------------------------------------


def test_duration_draws_stay_in_bounds() -> None:
    rng = random.Random(5)
    uniform = [sample(Uniform(kind="uniform", min=2, max=30), rng) for _ in range(2000)]
    assert 2 <= min(uniform) < 3
    assert 29 < max(uniform) <= 30
    lognormal = [sample(LogNormal(kind="lognormal", median=10, sigma=0.5, max=25), rng) for _ in range(2000)]
    assert 9 < statistics.median(lognormal) < 11
    assert max(lognormal) == 25  # capped
    assert min(lognormal) > 0
    assert sample(4.0, rng) == 4.0


def test_job_duration_distribution_over_http(api: httpx.Client, admin: httpx.Client) -> None:
    admin.patch("/config", json={"job_duration_s": {"kind": "uniform", "min": 0.05, "max": 0.4}})
    put_faults(admin, {"seed": 2})
    targets = [(WEB1, WEB1_DATA), (WEB2, WEB2_DATA), (DB1_SHUTOFF, DB1_DATA)]
    job_ids = [
        api.delete(f"/v1/{PID}/cloudservers/{server}/detachvolume/{volume}").json()["job_id"]
        for server, volume in targets
    ]
    durations = [job_seconds(wait_for_job(api, job_id)) for job_id in job_ids]
    assert all(0.049 <= d <= 0.401 for d in durations), durations
    assert len(set(durations)) == 3


def test_job_failure_rate_on_a_fake_clock() -> None:
    clock = FakeClock()
    faults = FaultConfig.model_validate({"seed": 4, "job_failure": {"rate": 0.25}})
    backend = EcsBackend.from_seed(
        load_seed(None), credentials=[DEMO_CREDENTIAL], config=EmulatorConfig(faults=faults), clock=clock
    )
    outcomes = []
    for _ in range(200):
        job = backend.detach_volume(PID, WEB1, WEB1_DATA)
        clock.advance(3)
        done = backend.get_job(PID, job.id)
        outcomes.append(done.status)
        if done.status == SUCCESS:
            backend.attach_volume(PID, WEB1, WEB1_DATA, "/dev/vdb")
            clock.advance(3)
        else:
            assert done.failure is not None
            assert done.failure.error_code == "Ecs.1000"
    assert 30 <= outcomes.count(FAIL) <= 70
    assert len(backend.ledger()[1]) == outcomes.count(SUCCESS)


def test_a_failed_job_leaves_the_disk_attached(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"job_failure": {"rate": 1, "error_code": "Ecs.1300", "fail_reason": "EVS busy"}})
    job = wait_for_job(api, api.delete(DETACH_PATH).json()["job_id"])
    assert (job["status"], job["error_code"], job["fail_reason"]) == (FAIL, "Ecs.1300", "EVS busy")
    assert WEB1_DATA in device_ids(api)
    assert api.get(VOLUME_PATH).json()["volume"]["status"] == "in-use"
    assert ledger(admin, 1)["summary"]["detaches"] == 0


def test_a_volume_fault_wins_over_the_failure_rate(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"job_failure": {"rate": 1}})
    admin.patch(
        f"/volumes/{WEB1_DATA}", json={"detach_fails_with": {"error_code": "Ecs.0102", "fail_reason": "x"}}
    )
    job = wait_for_job(api, api.delete(DETACH_PATH).json()["job_id"])
    assert (job["status"], job["error_code"]) == (FAIL, "Ecs.0102")


def test_success_before_the_disk_has_settled(api: httpx.Client, admin: httpx.Client) -> None:
    put_faults(admin, {"settle_lag_s": 0.4})
    job = wait_for_job(api, api.delete(DETACH_PATH).json()["job_id"])
    assert job["status"] == SUCCESS
    assert WEB1_DATA in device_ids(api)
    volume = api.get(VOLUME_PATH).json()["volume"]
    assert volume["status"] == "detaching"
    assert [a["server_id"] for a in volume["attachments"]] == [WEB1]
    assert api.delete(DETACH_PATH).json()["error"]["code"] == "Ecs.0102"  # still detaching
    time.sleep(0.45)
    assert WEB1_DATA not in device_ids(api)
    volume = api.get(VOLUME_PATH).json()["volume"]
    assert (volume["status"], volume["attachments"]) == ("available", [])


def test_settle_lag_distribution_on_a_fake_clock() -> None:
    clock = FakeClock()
    faults = FaultConfig.model_validate({"seed": 9, "settle_lag_s": {"kind": "uniform", "min": 5, "max": 10}})
    backend = EcsBackend.from_seed(
        load_seed(None),
        credentials=[DEMO_CREDENTIAL],
        config=EmulatorConfig(job_retention_s=0, faults=faults),
        clock=clock,
    )
    job = backend.detach_volume(PID, WEB1, WEB1_DATA)
    assert 5 <= job.settles_at - job.ends_at <= 10
    clock.advance(3)
    assert WEB1_DATA in [v.volume.id for v in backend.get_server(PID, WEB1).volumes]
    clock.advance(job.settles_at - job.ends_at)  # settles even though the job is no longer kept
    assert WEB1_DATA not in [v.volume.id for v in backend.get_server(PID, WEB1).volumes]
    assert backend.get_volume(PID, WEB1_DATA).volume.status == "available"

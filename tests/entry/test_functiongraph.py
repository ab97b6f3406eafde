"""``handler(event, context)`` and ``poll_handler`` as FunctionGraph calls them, agency credentials."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import EcsBackend, EmulatorConfig, EmulatorCredential, create_app, load_seed
from handler.core.validation import InvalidInput, MalformedInput
from handler.entry import functiongraph
from handler.entry.runtime import ConfigError
from handler.local._serve import BackgroundServer
from handler.settings import FunctionSettings, Settings
from tests.support import PID, WEB1, WEB1_DATA

EVENTS = Path(__file__).resolve().parents[2] / "events"
AGENCY = EmulatorCredential(
    access_key="AGENCYTEMPAK00000001",
    secret_key="agency-temporary-secret-key-000000000001",
    project_id=PID,
    security_token="agency-security-token-abc",
)


class FunctionGraphContext:
    """Behaves like the runtime's context object: temporary agency credentials and the project."""

    def __init__(self, token: str = AGENCY.security_token or "") -> None:
        self._token = token

    def getSecurityAccessKey(self) -> str:
        return AGENCY.access_key

    def getSecuritySecretKey(self) -> str:
        return AGENCY.secret_key

    def getSecurityToken(self) -> str:
        return self._token

    def getProjectID(self) -> str:
        return PID


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each ``gc.freeze()`` of the function, as in a new instance, without freezing the objects
    of the test process."""
    frozen: list[bool] = []
    monkeypatch.setattr(functiongraph.gc, "get_freeze_count", lambda: len(frozen))
    monkeypatch.setattr(functiongraph.gc, "freeze", lambda: frozen.append(True))
    return frozen


@pytest.fixture
def function_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, freezes: list[bool]) -> Iterator[str]:
    backend = EcsBackend.from_seed(
        load_seed(None), credentials=[AGENCY], config=EmulatorConfig(job_init_s=0.05, job_duration_s=0.3)
    )
    with BackgroundServer(create_app(backend)) as server:
        db = f"sqlite:///{tmp_path}/topics.db"
        monkeypatch.setenv("ECS_DETACH_ECS_ENDPOINT", server.url)
        monkeypatch.setenv("ECS_DETACH_JOBS_TOPIC", f"{db}?topic=jobs")
        monkeypatch.setenv("ECS_DETACH_RESULTS_TOPIC", f"{db}?topic=results")
        monkeypatch.setenv("ECS_DETACH_STORE", f"sqlite:///{tmp_path}/store.db")
        monkeypatch.setenv("ECS_DETACH_HISTORY", f"sqlite:///{tmp_path}/history.db")
        monkeypatch.setenv("ECS_DETACH_FIRST_POLL_S", "0.1")
        monkeypatch.setenv("ECS_DETACH_MIN_POLL_DELAY_S", "0.1")
        for name in ("AK", "SK", "PROJECT_ID", "SECURITY_TOKEN"):
            monkeypatch.delenv(f"HUAWEICLOUD_SDK_{name}", raising=False)
        monkeypatch.setattr(functiongraph, "_runtime", None)
        yield server.url
        if functiongraph._runtime is not None:
            functiongraph._runtime.close()


def test_detach_then_poll_until_the_result(function_env: str) -> None:
    context = FunctionGraphContext()
    functiongraph.init(context)
    answer = functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, context)
    assert answer["status_code"] == 202, answer
    runtime = functiongraph._runtime
    assert runtime is not None

    outcomes = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "finished" not in outcomes:
        for delivery in runtime.jobs.receive(1, wait=0.5):
            reply = functiongraph.poll_handler(json.loads(delivery.body), context)
            runtime.jobs.ack(delivery)  # the platform acks a trigger once the function returns
            outcomes.append(reply["status"])
            if reply["status"] == "finished":
                assert reply["outcome"] == "succeeded"
                assert [reply["job_id"]] == answer["job_ids"]
    assert outcomes[-1] == "finished"
    assert "continued" in outcomes  # it re-published itself instead of sleeping


def test_the_instance_is_frozen_once_its_runtime_is_built(
    function_env: str, freezes: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the instance holds once its runtime is built leaves the cyclic collector's way
    (``gc.freeze``): not before a build succeeds, and once per process."""
    store = os.environ["ECS_DETACH_STORE"]
    monkeypatch.setenv("ECS_DETACH_STORE", "sqlite:///relative/store.db")
    with pytest.raises(ConfigError):
        functiongraph.init(FunctionGraphContext())
    assert freezes == []
    monkeypatch.setenv("ECS_DETACH_STORE", store)
    functiongraph.init(FunctionGraphContext())
    assert freezes == [True]
    assert functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, None)["status_code"] == 202
    runtime = functiongraph._runtime
    assert runtime is not None
    runtime.close()
    monkeypatch.setattr(functiongraph, "_runtime", None)  # a later build in the same process
    functiongraph.init(FunctionGraphContext())
    assert freezes == [True]


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The collector as the package's index.py leaves it for a new instance (paused), without
    touching the test process's own."""
    collector = {"enabled": False}
    monkeypatch.setattr(functiongraph, "_COLLECTOR_PAUSED", True)
    monkeypatch.setattr(functiongraph.gc, "isenabled", lambda: collector["enabled"])
    monkeypatch.setattr(functiongraph.gc, "enable", lambda: collector.update(enabled=True))
    return collector


def test_the_paused_collector_resumes_when_the_first_invocation_ends(
    function_env: str, freezes: list[bool], paused: dict[str, bool]
) -> None:
    """What the first invocation made is frozen with the runtime, then collection resumes; later
    invocations change neither."""
    context = FunctionGraphContext()
    assert functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, context)["status_code"] == 202
    assert paused == {"enabled": True}
    assert freezes == [True, True]  # the runtime once built, then the rest of the first invocation
    answer = functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, context)
    assert answer["status_code"] == 202  # the same request again: its record
    assert freezes == [True, True]


def test_a_failed_first_invocation_resumes_the_collector_too(
    function_env: str, paused: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECS_DETACH_STORE", "sqlite:///relative/store.db")
    with pytest.raises(ConfigError):
        functiongraph.poll_handler({}, None)
    assert paused == {"enabled": True}


@pytest.mark.parametrize("trigger_type", ["RABBITMQ", "KAFKA"])
def test_poll_handler_takes_the_jobs_topic_from_a_dms_trigger(function_env: str, trigger_type: str) -> None:
    """With the jobs topic on DMS, the platform hands the accepted events over in a queue
    trigger's batch; each is polled, and a running job goes back to the topic with its delay."""
    context = FunctionGraphContext()
    answer = functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, context)
    assert answer["status_code"] == 202, answer
    runtime = functiongraph._runtime
    assert runtime is not None

    outcomes: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "finished" not in outcomes:
        for delivery in runtime.jobs.receive(1, wait=0.5):
            batch = {
                "event_version": "v1.0",
                "trigger_type": trigger_type,
                "records": [{"messages": [delivery.body], "topic_id": "jobs"}],
            }
            reply = functiongraph.poll_handler(batch, context)
            runtime.jobs.ack(delivery)
            outcomes += [record["status"] for record in reply["records"]]
    assert outcomes[-1] == "finished"
    assert "continued" in outcomes


def test_poll_handler_raises_on_a_message_that_is_not_an_accepted_event(function_env: str) -> None:
    """Raising hands the batch to the platform's retry and dead-letter policy: nothing is lost."""
    batch = {"trigger_type": "RABBITMQ", "records": [{"messages": ['{"server_id": "x"}']}]}
    with pytest.raises(InvalidInput, match=r"ecs-detach\.accepted"):
        functiongraph.poll_handler(batch, FunctionGraphContext())


def test_poll_handler_raises_malformed_input_on_a_deeply_nested_message(function_env: str) -> None:
    batch = {"record": [{"smn": {"message": "[" * 100_000 + "]" * 100_000}}]}
    with pytest.raises(MalformedInput, match="nested too deeply"):
        functiongraph.poll_handler(batch, FunctionGraphContext())


def test_a_wrong_security_token_is_refused_by_the_gateway(function_env: str) -> None:
    with pytest.raises(functiongraph.RetryLater, match="retried later"):  # ours to fix: not a refusal
        functiongraph.handler(
            {"server_id": WEB1, "volume_id": WEB1_DATA}, FunctionGraphContext(token="stolen-or-stale")
        )
    runtime = functiongraph._runtime
    assert runtime is not None
    assert runtime.results.receive(1) == []  # no result: the request was not answered for good


def test_each_invocation_signs_with_the_credentials_its_context_carries(function_env: str) -> None:
    """The agency's temporary credentials rotate: a warm instance takes each invocation's."""
    functiongraph.init(FunctionGraphContext())
    with pytest.raises(functiongraph.RetryLater):  # the platform retries, with fresh credentials
        functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, FunctionGraphContext("expired"))
    fresh = functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, FunctionGraphContext())
    assert fresh["status_code"] == 202, fresh


def test_an_invalid_event_returns_the_field_errors(function_env: str) -> None:
    answer = functiongraph.handler({"server_id": WEB1}, FunctionGraphContext())
    assert answer["status_code"] == 422
    (record,) = answer["records"]
    assert record["status"] == "invalid"
    assert [(e["field"], e["reason"]) for e in record["errors"]] == [
        ("volume_id", "volume_id or device is required")
    ]


class ContextWithUserData(FunctionGraphContext):
    """The context as FunctionGraph serves encrypted_user_data: getUserData(key) only."""

    def __init__(self, user_data: dict[str, str]) -> None:
        super().__init__()
        self._user_data = user_data

    def getUserData(self, key: str) -> str:
        return self._user_data.get(key, "")


def _apig_event(token: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "fg-apig.json").read_text())
    event["headers"]["authorization"] = f"Bearer {token}"
    return event


def test_settings_held_only_in_the_context_user_data(
    function_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bearer tokens and the store in encrypted_user_data reach the function through
    context.getUserData, though not in os.environ: the APIG request is accepted, not 401, and
    the records go to the configured store, not the relative default."""
    monkeypatch.delenv("ECS_DETACH_STORE")
    monkeypatch.delenv("ECS_DETACH_WEBHOOK_BEARER_TOKENS", raising=False)
    token = "user-data-only-token-0123456789abcdef"
    store = tmp_path / "from-user-data.db"
    context = ContextWithUserData(
        {"ECS_DETACH_WEBHOOK_BEARER_TOKENS": json.dumps([token]), "ECS_DETACH_STORE": f"sqlite:///{store}"}
    )
    functiongraph.init(context)
    answer = functiongraph.handler(_apig_event(token), context)
    assert answer["statusCode"] == 202, answer
    assert json.loads(answer["body"])["records"][0]["status"] == "accepted"
    assert store.exists()
    refused = functiongraph.handler(_apig_event("another-token-0123456789abcdef0123"), context)
    assert refused["statusCode"] == 401


def test_a_queue_event_reads_only_the_functions_settings(
    function_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold start reads the functions' settings alone: a broken webhook setting does not stop
    a detach from a queue trigger. The first webhook event reads the rest, from the context's
    user data as well, and names the broken variable (never its value)."""
    monkeypatch.setenv("ECS_DETACH_WEBHOOK_BEARER_TOKENS", "[not-json-s3cret")
    context = ContextWithUserData({"ECS_DETACH_MAX_BODY_BYTES": "4096"})
    answer = functiongraph.handler({"server_id": WEB1, "volume_id": WEB1_DATA}, context)
    assert answer["status_code"] == 202, answer
    runtime = functiongraph._runtime
    assert runtime is not None
    assert type(runtime.settings) is FunctionSettings
    with pytest.raises(ConfigError, match=r"^ECS_DETACH_WEBHOOK_BEARER_TOKENS: not valid JSON") as refused:
        functiongraph.handler(_apig_event("any-token-0123456789abcdef0123456"), context)
    assert "s3cret" not in str(refused.value)
    monkeypatch.setenv("ECS_DETACH_WEBHOOK_BEARER_TOKENS", json.dumps(["token-0123456789abcdef0123456789"]))
    full = runtime.full_settings
    assert isinstance(full, Settings)
    assert full.max_body_bytes == 4096  # from the user data, as the functions' settings are
    assert full.store == runtime.settings.store
    assert runtime.full_settings is full  # read once


def test_a_relative_sqlite_store_is_refused(function_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code folder is read-only in FunctionGraph: a relative SQLite path (the default) is a
    clear error at initialisation, not a failure at the first request."""
    monkeypatch.delenv("ECS_DETACH_STORE")
    with pytest.raises(ConfigError, match=r"ECS_DETACH_STORE: a relative SQLite path .* sqlite:////tmp/"):
        functiongraph.init(FunctionGraphContext())


def test_a_relative_sqlite_history_is_refused(function_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The history's default (sqlite:///.ecs-detach/history.db) too: set a postgresql:// history,
    an absolute /tmp path, or off (docs/history.md)."""
    monkeypatch.delenv("ECS_DETACH_HISTORY")
    with pytest.raises(
        ConfigError, match=r"^ECS_DETACH_HISTORY: a relative SQLite path .* ECS_DETACH_HISTORY=off"
    ):
        functiongraph.init(FunctionGraphContext())
    monkeypatch.setenv("ECS_DETACH_HISTORY", "off")
    functiongraph.init(FunctionGraphContext())  # no history: nothing to write

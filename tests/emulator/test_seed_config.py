"""Seed files, the default seed's promises, configuration and credentials from the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator import (
    DEMO_CREDENTIAL,
    EcsBackend,
    EmulatorConfig,
    EmulatorCredential,
    credential_from_env,
    load_seed,
)
from tests.support import (
    BATCH1_LOCKED,
    CLUSTER1,
    CLUSTER2,
    DB1_SHUTOFF,
    PID,
    SHARED,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
)

VOLUME = "2c4d6e8f-0000-4000-8000-000000000099"


def test_demo_credential_is_the_documented_one() -> None:
    assert DEMO_CREDENTIAL.access_key == "DEMOACCESSKEY0000000"
    assert DEMO_CREDENTIAL.secret_key == "demo-secret-key-for-the-local-emulator-0"
    assert DEMO_CREDENTIAL.project_id == "0123456789abcdef0123456789abcdef"
    assert DEMO_CREDENTIAL.security_token is None


def test_default_config() -> None:
    assert EmulatorConfig().model_dump() == {
        "job_init_s": 0.5,
        "job_duration_s": 3.0,
        "job_retention_s": 86400.0,
        "max_clock_skew_s": 900,
    }


def test_default_seed_keeps_its_promises() -> None:
    backend = EcsBackend.from_seed(load_seed(None), credentials=[DEMO_CREDENTIAL])
    servers = {d.server.id: d for d in backend.snapshot().servers}
    assert len(servers) == 6
    web1 = servers[WEB1]
    assert (web1.server.name, web1.server.status, web1.server.tags["auto-remediation"]) == (
        "web-1",
        "ACTIVE",
        "true",
    )
    devices = {v.volume.id: v.attachment.device for v in web1.volumes}
    assert (devices[WEB1_DATA], devices[WEB1_LOGS]) == ("/dev/vdb", "/dev/vdc")
    assert servers[DB1_SHUTOFF].server.status == "SHUTOFF"
    assert servers[BATCH1_LOCKED].server.locked
    sharing = [sid for sid, d in servers.items() if any(v.volume.id == SHARED for v in d.volumes)]
    assert sorted(sharing) == sorted([CLUSTER1, CLUSTER2])
    for detail in servers.values():
        system = detail.volumes[0].attachment
        assert (system.device, system.boot_index) == ("/dev/vda", 0)
        assert detail.server.project_id == PID


def test_load_seed_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"servers": [{"id": WEB1, "name": "only"}]}))
    assert load_seed(path) == load_seed(str(path)) == {"servers": [{"id": WEB1, "name": "only"}]}
    path.write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        load_seed(path)


def server(**fields: Any) -> dict[str, Any]:
    return {"id": WEB1, "name": "s", **fields}


@pytest.mark.parametrize(
    ("seed", "reason"),
    [
        ({"servers": [server(attachments=[{"volume_id": VOLUME, "device": "/dev/vdb"}])]}, "unknown volume"),
        ({"servers": [server(), server()]}, "duplicate server"),
        ({"volumes": [{"id": VOLUME, "name": "v"}] * 2}, "duplicate volume"),
        ({"servers": [server(id="web-1")]}, "pattern"),
        ({"servers": [server(nope=1)]}, "Extra inputs"),
        (
            {
                "volumes": [{"id": VOLUME, "name": "v"}],
                "servers": [
                    server(attachments=[{"volume_id": VOLUME, "device": "/dev/vdb"}]),
                    server(
                        id=WEB1.replace("aaaa", "bbbb"),
                        attachments=[{"volume_id": VOLUME, "device": "/dev/vdb"}],
                    ),
                ],
            },
            "non-multiattach",
        ),
        (
            {
                "volumes": [{"id": VOLUME, "name": "v"}, {"id": VOLUME.replace("99", "98"), "name": "w"}],
                "servers": [
                    server(
                        attachments=[
                            {"volume_id": VOLUME, "device": "/dev/vdb"},
                            {"volume_id": VOLUME.replace("99", "98"), "device": "/dev/vdb"},
                        ]
                    )
                ],
            },
            "duplicate device",
        ),
    ],
)
def test_bad_seeds_are_refused(seed: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EcsBackend.from_seed(seed, credentials=[DEMO_CREDENTIAL])


def test_seed_project_and_boot_index_defaults() -> None:
    seed = {
        "project_id": "b" * 32,
        "volumes": [{"id": VOLUME, "name": "root"}],
        "servers": [
            server(root_device_name="/dev/sda", attachments=[{"volume_id": VOLUME, "device": "/dev/sda"}])
        ],
    }
    backend = EcsBackend.from_seed(seed, credentials=[DEMO_CREDENTIAL])
    attached = backend.get_attachment("b" * 32, WEB1, VOLUME)
    assert attached.attachment.boot_index == 0
    assert attached.volume.status == "in-use"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEMO_CREDENTIAL),
        ({"HUAWEICLOUD_SDK_AK": "AK1"}, DEMO_CREDENTIAL),
        ({"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "sk"}, DEMO_CREDENTIAL),
        (
            {"HUAWEICLOUD_SDK_AK": "AK1", "HUAWEICLOUD_SDK_SK": "sk1"},
            EmulatorCredential("AK1", "sk1", PID),
        ),
        (
            {
                "HUAWEICLOUD_SDK_AK": "AK1",
                "HUAWEICLOUD_SDK_SK": "sk1",
                "HUAWEICLOUD_SDK_PROJECT_ID": "c" * 32,
                "HUAWEICLOUD_SDK_SECURITY_TOKEN": "tok",
            },
            EmulatorCredential("AK1", "sk1", "c" * 32, security_token="tok"),
        ),
    ],
)
def test_credential_from_env(env: dict[str, str], expected: EmulatorCredential) -> None:
    assert credential_from_env(env) == expected


def test_credential_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "ENVAK")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "env-sk")
    monkeypatch.delenv("HUAWEICLOUD_SDK_PROJECT_ID", raising=False)
    monkeypatch.delenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", raising=False)
    assert credential_from_env() == EmulatorCredential("ENVAK", "env-sk", PID)

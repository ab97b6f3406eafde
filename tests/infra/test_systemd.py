"""infra/systemd: sections, settings file, hardening, and `systemd-analyze verify` where it exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA

SYSTEMD = INFRA / "systemd"
UNITS = {"ecs-detach-up.service": "up", "ecs-detach-worker.service": "worker"}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
    "DynamicUser": "yes",
}


def _parse(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize(("unit", "command"), UNITS.items())
def test_unit_runs_the_command_with_the_settings_file_and_hardening(unit: str, command: str) -> None:
    sections = _parse(SYSTEMD / unit)
    assert set(sections) == {"Unit", "Service", "Install"}
    service = sections["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.split()[:2] == ["/opt/ecs-detach/venv/bin/ecs-detach", command]
    assert service["EnvironmentFile"] == ["/etc/ecs-detach/ecs-detach.env"]
    assert service["StateDirectory"] == ["ecs-detach"]
    assert service["WorkingDirectory"] == ["/var/lib/ecs-detach"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert "@system-service" in service["SystemCallFilter"]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    assert "127.0.0.1" in exec_start  # listens on loopback only: put a TLS proxy in front


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    copies = []
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text()
        # verify checks that the binary and the settings file exist: stand-ins for this machine.
        text = text.replace("/opt/ecs-detach/venv/bin/ecs-detach", "/bin/true")
        text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
        (tmp_path / unit).write_text(text)
        copies.append(str(tmp_path / unit))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "ecs-detach" in line]
    assert not problems, problems


def test_settings_example_names_the_credentials() -> None:
    text = (SYSTEMD / "ecs-detach.env.example").read_text()
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "ECS_DETACH_REGION"):
        assert re.search(rf"^{name}=", text, re.MULTILINE), name

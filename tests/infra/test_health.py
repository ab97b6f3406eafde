"""Every served target answers the health check its manifests name: each target started for
real (functions-framework, the worker, `ecs-detach up`) and probed over loopback HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from emulator import DEMO_CREDENTIAL
from tests.infra.conftest import INFRA, ROOT

pytestmark = pytest.mark.slow

DOCKERFILE = INFRA / "container" / "Dockerfile"
CONTAINER_SOURCE = ROOT / "handler" / "local" / "container.py"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def _target(container: dict[str, Any]) -> str:
    """What a container runs: a container_server (functions-framework) target, an ecs-detach
    command, or the image's default command (the webhook target)."""
    arguments = [*container.get("command", []), *container.get("args", [])]
    if "handler.local.container_server" in arguments:
        return str(arguments[arguments.index("--target") + 1])
    if arguments[:1] == ["ecs-detach"]:
        return str(arguments[1])
    assert not arguments, arguments
    return _default_target(DOCKERFILE.read_text())


def _default_target(dockerfile: str) -> str:
    (target,) = re.findall(
        r'^CMD \["python", "-m", "handler.local.container_server", "--target", "(\w+)"', dockerfile, re.M
    )
    return str(target)


def manifest_probes() -> list[tuple[str, str, str]]:
    """(where, target, path) of every HTTP health check in infra/."""
    text = DOCKERFILE.read_text()
    healthcheck = re.search(r"^HEALTHCHECK .*?\n(?:.*\\\n)*.*$", text, re.M)
    assert healthcheck is not None
    (path,) = re.findall(r"/healthz|/\w+(?=')", healthcheck.group(0))
    default = _default_target(text)
    found = [("Dockerfile HEALTHCHECK", default, path)]
    for manifest in sorted([*INFRA.glob("knative/*.yaml"), *INFRA.glob("kubernetes/*.yaml")]):
        for document in yaml.safe_load_all(manifest.read_text()):
            if not document or document["kind"] not in ("Service", "Deployment"):
                continue
            spec = document["spec"]["template"]["spec"]
            for container in spec["containers"]:
                for probe in PROBES:
                    if "httpGet" in container.get(probe, {}):
                        where = f"{manifest.name} {document['metadata']['name']} {probe}"
                        found.append((where, _target(container), container[probe]["httpGet"]["path"]))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    db = f"sqlite:///{tmp_path}/topics.db"
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ECS_DETACH_", "HUAWEICLOUD_SDK_"))},
        "ECS_DETACH_ECS_ENDPOINT": "http://127.0.0.1:9",  # never called by a health check
        "ECS_DETACH_JOBS_TOPIC": f"{db}?topic=jobs",
        "ECS_DETACH_RESULTS_TOPIC": f"{db}?topic=results",
        "ECS_DETACH_STORE": f"sqlite:///{tmp_path}/store.db",
        "ECS_DETACH_WEBHOOK_BEARER_TOKENS": json.dumps(["health-test-token-0123456789abcdef"]),
        "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
        "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
    }


def _command(target: str, port: int) -> list[str]:
    cli = [sys.executable, "-m", "handler.local.cli"]
    if target in ("webhook", "poll"):
        return [
            sys.executable,
            "-m",
            "handler.local.container_server",
            "--source",
            str(CONTAINER_SOURCE),
            "--target",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    if target == "worker":
        return [*cli, "worker", "--host", "127.0.0.1", "--health-port", str(port), "--concurrency", "1"]
    assert target == "up", target
    return [*cli, "up", "--port", str(port), "--emulator-port", str(_free_port())]


@pytest.fixture
def started(tmp_path: Path, environment: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _probe(url: str, process: subprocess.Popen[bytes], timeout: float = 40.0) -> httpx.Response:
    """The first answer of ``url`` (the server may still be starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the target exited with {process.returncode}"
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


TARGETS = sorted({(target, path) for _, target, path in manifest_probes()} | {("up", "/healthz")})


def test_every_target_with_a_health_check_is_covered() -> None:
    assert {target for target, _ in TARGETS} == {"webhook", "poll", "worker", "up"}
    assert {where.split()[0] for where, _, _ in manifest_probes()} >= {
        "Dockerfile",
        "service.yaml",
        "poll.yaml",
        "worker-redis.yaml",
        "worker-nats.yaml",
    }


@pytest.mark.parametrize(("target", "path"), TARGETS, ids=[f"{t}{p}" for t, p in TARGETS])
def test_target_answers_its_health_check(
    target: str,
    path: str,
    tmp_path: Path,
    environment: dict[str, str],
    started: list[subprocess.Popen[bytes]],
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        _command(target, port),
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started.append(process)
    answer = _probe(f"http://127.0.0.1:{port}{path}", process)
    assert answer.status_code == 200, (target, path, answer.status_code, answer.text)
    assert answer.json() == {"status": "ok"}

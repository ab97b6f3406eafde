"""The FunctionGraph package: content, reproducibility, and the handler run from the package alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app, load_seed
from handler.local._serve import BackgroundServer
from handler.local.package import (
    EXCLUDED_FOLDER,
    FORBIDDEN_TOP_LEVEL,
    HANDLER_MODULE,
    PackageError,
    PackageReport,
    build_package,
    format_report,
    resolve,
)
from tests.infra.conftest import ROOT, RUNNING_PYTHON

pytestmark = pytest.mark.slow

EVENTS = ROOT / "events"
TOKEN = "package-test-webhook-token-0123456789"

# Runs inside `python -S` with only the unpacked package on sys.path, as FunctionGraph loads it
# (index.handler, index.poll_handler): every sample event, then one poll of the first accepted job.
SCRIPT = """
import importlib.util, json, sys
assert "site" not in sys.modules, "site packages are visible"
leaks = [name for name in ("emulator", "starlette", "uvicorn", "flask", "functions_framework", "rich")
         if importlib.util.find_spec(name) is not None]
assert not leaks, f"importable outside the package: {leaks}"
import index
from handler.entry import functiongraph
events = json.loads(sys.argv[1])
replies = [index.handler(event, None) for event in events]
runtime = functiongraph._runtime
deliveries = runtime.jobs.receive(1, wait=5)
poll = index.poll_handler(json.loads(deliveries[0].body), None)
runtime.jobs.ack(deliveries[0])
origins = sorted(name for name, module in list(sys.modules.items())
                 if "site-packages" in (getattr(module, "__file__", None) or ""))
print(json.dumps({"replies": replies, "poll": poll, "site_packages_modules": origins}))
"""


def _names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _top_level(names: list[str]) -> set[str]:
    return {PurePosixPath(name).parts[0].split(".")[0].split("-")[0].lower() for name in names}


def test_package_holds_the_handler_and_no_web_framework(package: PackageReport) -> None:
    names = _names(package.path)
    assert f"{HANDLER_MODULE.replace('.', '/')}.py" in names
    assert "handler/sources/mappings/jira.json" in names
    assert not [name for name in names if name.startswith(EXCLUDED_FOLDER + "/")]
    assert "handler/local/cli.py" not in names
    assert not _top_level(names) & FORBIDDEN_TOP_LEVEL
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.startswith("bin/")]
    for distribution in ("httpx", "pydantic", "pydantic_core", "cryptography", "cloudevents"):
        assert distribution in _top_level(names), distribution


def test_report_matches_the_zip(package: PackageReport) -> None:
    with zipfile.ZipFile(package.path) as archive:
        infos = archive.infolist()
    assert package.zipped_bytes == package.path.stat().st_size
    assert package.unzipped_bytes == sum(info.file_size for info in infos)
    assert package.files == len(infos)
    assert sum(entry.files for entry in package.top_level) == package.files
    assert "handler/" in {entry.name for entry in package.top_level}
    assert package.import_checked
    assert package.path.name == f"ecs-detach-0.1.0-py{RUNNING_PYTHON.replace('.', '')}.zip"
    text = format_report(package)
    for fragment in (
        str(package.path),
        package.sha256,
        "MiB zipped",
        "handler/",
        "poll_handler",
        "pydantic==",
    ):
        assert fragment in text


def test_zip_is_reproducible(package: PackageReport, wheelhouse: Path, tmp_path: Path) -> None:
    again = build_package(RUNNING_PYTHON, tmp_path, wheelhouse=wheelhouse)
    assert again.path.read_bytes() == package.path.read_bytes()
    with zipfile.ZipFile(package.path) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_handler_runs_from_the_package_alone(package: PackageReport, tmp_path: Path) -> None:
    unpacked = tmp_path / "code"
    unpacked.mkdir()
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(unpacked)
    apig = json.loads((EVENTS / "fg-apig.json").read_text())
    apig["headers"]["authorization"] = f"Bearer {TOKEN}"
    events: list[dict[str, Any]] = [apig, json.loads((EVENTS / "fg-timer.json").read_text())]
    backend = EcsBackend.from_seed(
        load_seed(None),
        credentials=[DEMO_CREDENTIAL],
        config=EmulatorConfig(job_init_s=0.05, job_duration_s=0.3),
    )
    with BackgroundServer(create_app(backend)) as server:
        db = f"sqlite:///{tmp_path}/topics.db"
        env = {
            "PATH": os.defpath,
            "PYTHONPATH": str(unpacked),
            "ECS_DETACH_ECS_ENDPOINT": server.url,
            "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
            "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
            "ECS_DETACH_JOBS_TOPIC": f"{db}?topic=jobs",
            "ECS_DETACH_RESULTS_TOPIC": f"{db}?topic=results",
            "ECS_DETACH_STORE": f"sqlite:///{tmp_path}/store.db",
            "ECS_DETACH_WEBHOOK_BEARER_TOKENS": json.dumps([TOKEN]),
        }
        result = subprocess.run(
            [sys.executable, "-S", "-B", "-c", SCRIPT, json.dumps(events)],
            cwd=unpacked,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.splitlines()[-1])
    apig_reply, timer_reply = output["replies"]
    assert apig_reply["statusCode"] == 202, apig_reply
    assert json.loads(apig_reply["body"])["records"][0]["status"] == "accepted"
    assert timer_reply["status_code"] == 202, timer_reply
    assert [record["status"] for record in timer_reply["records"]] == ["accepted"]
    assert output["poll"]["status"] in ("continued", "finished"), output["poll"]
    assert output["site_packages_modules"] == []


def test_other_pythons_resolve_with_their_own_markers() -> None:
    for_312 = {pin.name.lower().replace("_", "-") for pin in resolve("3.12")}
    assert {"pydantic-core", "cryptography", "httpx"} <= for_312
    assert "exceptiongroup" not in for_312  # anyio needs it only before 3.11
    for_310 = {pin.name.lower().replace("_", "-") for pin in resolve("3.10")}
    assert "exceptiongroup" in for_310


def test_unsupported_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="not supported"):
        build_package("3.9", tmp_path)

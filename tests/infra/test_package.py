"""The FunctionGraph package: content, reproducibility, and the handler run from the package alone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

import hcl2
import pytest

from emulator import DEMO_CREDENTIAL, EcsBackend, EmulatorConfig, create_app, load_seed
from handler.core.followups import DetachResult, result_event
from handler.core.models import Outcome
from handler.local._serve import BackgroundServer
from handler.local.cli import PACKAGE_URL_OPTIONS, _parser, main
from handler.local.package import (
    CONSTRAINTS,
    DIRECT_UPLOAD_BYTES,
    EXCLUDED_FOLDER,
    FORBIDDEN_TOP_LEVEL,
    HANDLER_MODULE,
    PACKAGE_EXTRAS,
    PackageError,
    PackageReport,
    build_package,
    find_interpreter,
    format_report,
    interpreter_version,
    resolve,
)
from handler.support.extras import needs
from tests.infra.conftest import ROOT, RUNNING_PYTHON
from tests.support import WEB1, WEB1_DATA

pytestmark = pytest.mark.slow

EVENTS = ROOT / "events"
TOKEN = "package-test-webhook-token-0123456789"

# Runs inside `python -S` with only the unpacked package on sys.path, as FunctionGraph loads it
# (index.handler, index.poll_handler): every sample event, then one poll of the first accepted job.
# The first event is a queue trigger's, a detach that is accepted: what only webhook routes need
# (the edges' settings, their models, authentication) and what only other outcomes need (the
# flow's later messages, a TypeAdapter) are still unloaded after it.
SCRIPT = """
import importlib.util, json, sys
assert "site" not in sys.modules, "site packages are visible"
leaks = [name for name in ("emulator", "starlette", "uvicorn", "flask", "functions_framework", "rich")
         if importlib.util.find_spec(name) is not None]
assert not leaks, f"importable outside the package: {leaks}"
import gc, index
from handler.entry import functiongraph
# The history's stores and their base: loaded by its writer's thread when it opens one.
loaded_by_the_import = [name for name in ("handler.history._base", "handler.history.sqlite")
                        if name in sys.modules]
assert not gc.isenabled(), "index.py pauses the collector for the cold start"
events = json.loads(sys.argv[1])
replies = [index.handler(events[0], None)]
unneeded = ("handler.settings._edges", "handler.security", "handler.functions.channel_config",
            "handler.sources._labels", "handler.entry.webhooks", "handler.core.followups",
            "pydantic.type_adapter", "encodings.idna")
loaded_by_the_first = [name for name in unneeded if name in sys.modules]
replies += [index.handler(event, None) for event in events[1:]]
assert gc.isenabled() and gc.get_freeze_count() > 0, "the first invocation froze and resumed it"
runtime = functiongraph._runtime
deliveries = runtime.jobs.receive(1, wait=5)
poll = index.poll_handler(json.loads(deliveries[0].body), None)
runtime.jobs.ack(deliveries[0])
origins = sorted(name for name, module in list(sys.modules.items())
                 if "site-packages" in (getattr(module, "__file__", None) or ""))
print(json.dumps({"replies": replies, "poll": poll, "site_packages_modules": origins,
                  "loaded_by_the_first": loaded_by_the_first, "loaded_by_the_import": loaded_by_the_import}))
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
    compiled = [name for name in names if name.endswith(".pyc")]
    assert f"handler/entry/__pycache__/functiongraph.{sys.implementation.cache_tag}.pyc" in compiled
    assert not [name for name in compiled if "/v1/" in name], "pydantic.v1 is never imported: no bytecode"
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
    again = build_package(RUNNING_PYTHON, tmp_path, webhook_routes=True, wheelhouse=wheelhouse)
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
    events: list[dict[str, Any]] = [json.loads((EVENTS / "fg-timer.json").read_text()), apig]
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
            "ECS_DETACH_HISTORY": f"sqlite:///{tmp_path}/history.db",
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
    timer_reply, apig_reply = output["replies"]
    assert apig_reply["statusCode"] == 202, apig_reply
    assert json.loads(apig_reply["body"])["records"][0]["status"] == "accepted"
    assert timer_reply["status_code"] == 202, timer_reply
    assert [record["status"] for record in timer_reply["records"]] == ["accepted"]
    assert output["poll"]["status"] in ("continued", "finished"), output["poll"]
    assert output["site_packages_modules"] == []
    assert output["loaded_by_the_first"] == []
    assert output["loaded_by_the_import"] == []


def test_other_pythons_resolve_with_their_own_markers() -> None:
    for_312 = {pin.name.lower().replace("_", "-") for pin in resolve("3.12")}
    assert {"pydantic-core", "httpx"} <= for_312
    assert "cryptography" not in for_312  # the webhooks extra's
    assert "exceptiongroup" not in for_312  # anyio needs it only before 3.11
    for_310 = {pin.name.lower().replace("_", "-") for pin in resolve("3.10")}
    assert "exceptiongroup" in for_310


def test_unsupported_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="not supported"):
        build_package("3.9", tmp_path)


# Run from the unpacked package alone: what its bytecode holds. The docstrings are gone (of our
# modules, classes and functions, and of the libraries'), the asserts stay, and a traceback names
# the line of the source that raised.
BYTECODE_SCRIPT = """
import json, sys, traceback
import httpx, pydantic
from handler.cloud import _ids, _transport
from handler.core.models import DetachRequest
documented = (_ids, _ids.checked, DetachRequest, pydantic.BaseModel, httpx.Client.send)
docstrings = [obj.__doc__ for obj in documented]
try:
    _transport.KeepAliveTransport._exchange(type("Unconnected", (), {"sock": None})(), None, b"", {})
    assert_kept = False
except AssertionError:
    assert_kept = True
try:
    _ids.checked("server_id", "not-an-id")
except _ids.InvalidId as error:
    frame = traceback.extract_tb(error.__traceback__)[-1]
raised_at = [frame.lineno, frame.line]
print(json.dumps({"docstrings": docstrings, "assert_kept": assert_kept, "raised_at": raised_at}))
"""


def test_the_bytecode_has_no_docstrings_but_every_assert_and_line(
    package: PackageReport, tmp_path: Path
) -> None:
    """The package's bytecode is compiled without docstrings (memory in every function instance:
    docs/performance.md), and only that differs from what its sources compile to."""
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(tmp_path)
    result = subprocess.run(
        [sys.executable, "-S", "-c", BYTECODE_SCRIPT],
        cwd=tmp_path,
        env={"PATH": os.defpath, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["docstrings"] == [None] * 5
    assert output["assert_kept"] is True
    source = (ROOT / "handler" / "cloud" / "_ids.py").read_text().splitlines()
    statement = "raise InvalidId(kind, value, form)"
    line = next(number for number, text in enumerate(source, 1) if statement in text)
    assert output["raised_at"] == [line, statement]


def test_package_adds_the_extras_its_urls_need_and_no_other(wheelhouse: Path, tmp_path: Path) -> None:
    """A Redis delay topic without --extra redis: the build adds the extra and says so; without
    --webhook-routes the webhooks extra stays out, and an API Gateway event names it. The
    bytecode is unchecked-hash: a read-only code folder imports the handler compiling nothing."""
    report = build_package(
        RUNNING_PYTHON, tmp_path, urls=[("--delay-topic", "rediss://:s3cret@h:6379")], wheelhouse=wheelhouse
    )
    assert report.extras == report.added_extras == ("redis",)
    assert json.loads(report.manifest.read_text())["extras"] == ["redis"]
    assert {"redis", "handler"} <= _top_level(_names(report.path))
    assert not {"cryptography", "cloudevents", "jmespath", "standardwebhooks"} & _top_level(
        _names(report.path)
    )
    text = format_report(report)
    assert "added extras  redis: the URLs or the webhook routes need them" in text
    assert "unchecked-hash .pyc" in text
    assert "s3cret" not in text
    unpacked = tmp_path / "code"
    with zipfile.ZipFile(report.path) as archive:
        archive.extractall(unpacked)
        pyc = archive.read(f"handler/__pycache__/__init__.{sys.implementation.cache_tag}.pyc")
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source never checked
    script = (  # counts the modules compiled from source (no valid .pyc), failed imports included
        "import json, sys\n"
        "import importlib._bootstrap_external as external\n"
        "stale, to_code = [], external.SourceLoader.source_to_code\n"
        "def counted(self, data, path, *, _optimize=-1):\n"
        "    stale.append(path)\n"
        "    return to_code(self, data, path, _optimize=_optimize)\n"
        "external.SourceLoader.source_to_code = counted\n"
        "import index\n"
        "event = json.loads(sys.argv[1])\n"
        "try:\n"
        "    index.handler(event, None)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
        "print(json.dumps(stale))\n"
    )
    # No bytecode written, as in FunctionGraph's read-only code folder.
    env = {"PATH": os.defpath, "PYTHONPATH": str(unpacked), "PYTHONDONTWRITEBYTECODE": "1"}
    env |= {"HUAWEICLOUD_SDK_AK": "ak"}
    env |= {"HUAWEICLOUD_SDK_SK": "sk", "ECS_DETACH_REGION": "ap-southeast-1"}
    env |= {"ECS_DETACH_STORE": f"sqlite:///{tmp_path}/store.db"}
    env |= {"ECS_DETACH_JOBS_TOPIC": f"sqlite:///{tmp_path}/topics.db?topic=jobs"}
    env |= {"ECS_DETACH_RESULTS_TOPIC": f"sqlite:///{tmp_path}/topics.db?topic=results"}
    env |= {"ECS_DETACH_HISTORY": f"sqlite:///{tmp_path}/history.db"}
    apig = (EVENTS / "fg-apig.json").read_text()
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, apig],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "ConfigError the webhook routes (an API Gateway trigger) need the webhooks extra, which this "
        "package lacks: ecs-detach package --webhook-routes"
    )
    assert json.loads(lines[-1]) == []  # every module imported (or tried) had its .pyc


def test_the_target_interpreter_is_found_or_its_absence_said(
    package: PackageReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Python than the running one comes from PATH or pyenv; without one the package has
    no bytecode and the report says what that costs and how to fix it."""
    other = "3.12" if RUNNING_PYTHON != "3.12" else "3.10"
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert find_interpreter(other) is None
    assert find_interpreter(RUNNING_PYTHON) == Path(sys.executable)
    real = sorted(Path.home().glob(f".pyenv/versions/{other}.*/bin/python{other}"))
    if real:
        link = tmp_path / "pyenv" / "versions" / f"{other}.99" / "bin" / f"python{other}"
        link.parent.mkdir(parents=True)
        link.symlink_to(real[-1])
        assert find_interpreter(other) == link
        assert interpreter_version(link) == other
    text = format_report(replace(package, python=other, bytecode=None, compiled=0))
    assert f"bytecode      none: no Python {other} interpreter on PATH (python{other}) or in pyenv" in text
    assert f"pyenv install {other}" in text


def test_manifest_lists_the_package(package: PackageReport) -> None:
    manifest = json.loads(package.manifest.read_text())
    assert package.manifest == package.path.with_name(package.path.stem + ".manifest.json")
    assert manifest["sha256"] == hashlib.sha256(package.path.read_bytes()).hexdigest()
    assert manifest["python"] == RUNNING_PYTHON
    assert manifest["extras"] == ["webhooks"]
    assert manifest["bytecode"] == RUNNING_PYTHON
    assert manifest["distributions"] == [str(pin) for pin in package.distributions]


def test_builds_take_their_versions_from_the_constraints() -> None:
    """3.10 and 3.12 builds resolve the same versions, the pinned ones, whatever PyPI has since."""
    pinned = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in CONSTRAINTS.read_text().splitlines()
        if line and not line.startswith("#")
    }
    for python in ("3.10", "3.12"):
        for pin in resolve(python, extras=PACKAGE_EXTRAS):
            assert pinned[pin.name.lower().replace("_", "-")] == pin.version, (python, pin)


def test_initializer_names_the_missing_extra(package: PackageReport, tmp_path: Path) -> None:
    """A package without the redis extra and a Redis delay topic: the initializer says which
    extra to build with, instead of a ModuleNotFoundError on every invocation."""
    unpacked = tmp_path / "code"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(unpacked)
    script = (
        "import index\n"
        "try:\n"
        "    index.init(None)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    env = {
        "PATH": os.defpath,
        "PYTHONPATH": str(unpacked),
        "HUAWEICLOUD_SDK_AK": "ak",
        "HUAWEICLOUD_SDK_SK": "sk",
        "ECS_DETACH_REGION": "ap-southeast-1",
        "ECS_DETACH_JOBS_TOPIC": "smn://urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:jobs",
        "ECS_DETACH_RESULTS_TOPIC": "smn://urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:results",
        "ECS_DETACH_DELAY_TOPIC": "rediss://:secret-pw@redis.example:6379/0",
        "ECS_DETACH_STORE": "sqlite:////tmp/ecs-detach-test/store.db",
        "ECS_DETACH_HISTORY": "off",
    }
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", script],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigError ECS_DETACH_DELAY_TOPIC (rediss://) need(s) the redis extra")
    assert "install the redis extra: ecs-detach package --extra redis" in result.stdout
    assert "secret-pw" not in result.stdout


def test_the_documented_build_serves_the_example_deployment() -> None:
    """docs/deploy.md's `ecs-detach package` command, parsed by the CLI, names every extra the
    store and delay topic of example.tfvars need, the webhook routes when it has an API Gateway
    trigger (and the same Python)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"\.venv/bin/ecs-detach package (.*?)\n   ```", text, re.DOTALL)
    assert block is not None
    args = _parser().parse_args(["package", *shlex.split(block.group(1).replace("\\\n", " "))])
    example = hcl2.loads((ROOT / "infra" / "terraform" / "example.tfvars").read_text())
    urls = [("delay_topic_url", example["delay_topic_url"].strip('"'))]
    urls.append(("store_url", example.get("store_url", '"sqlite:////tmp/ecs-detach/store.db"').strip('"')))
    given = [
        (option, getattr(args, option.removeprefix("--").replace("-", "_"))) for option in PACKAGE_URL_OPTIONS
    ]
    added = {need.extra for need in needs([(option, url) for option, url in given if url])}
    assert {need.extra for need in needs(urls)} <= set(args.extra) | added
    assert args.webhook_routes == (example.get("apig_instance_id", '""') != '""')
    assert args.python == example["python_version"].strip('"')


# Runs in the target interpreter with only the unpacked package on sys.path: the packaged
# psycopg (its binary build, libpq inside the wheel) records the SMN trigger's result events
# through index.history_handler into the real PostgreSQL, twice, and reads them back.
HISTORY_SCRIPT = """
import json, sys
assert "site" not in sys.modules, "site packages are visible"
import index, psycopg
from handler.history import Query, open_history
event = json.loads(sys.argv[1])
first = index.history_handler(event, None)
again = index.history_handler(event, None)
store = open_history(sys.argv[2])
trails = store.query(Query())
store.close()
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2],
    "psycopg": psycopg.__file__,
    "libpq": psycopg.pq.__impl__,
    "first": first,
    "again": again,
    "trails": [
        {"outcome": t.outcome, "job_id": t.job_id, "steps": [s.event for s in t.steps]} for t in trails
    ],
}))
"""


@pytest.mark.parametrize(("python", "given"), [("3.10", "option"), ("3.12", "setting")])
def test_the_postgres_package_records_result_events_in_postgresql(
    python: str,
    given: str,
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ecs-detach package` for FunctionGraph's Pythons with a postgresql:// history, given as
    --history or as the ECS_DETACH_HISTORY setting: the build adds the postgres extra, and the
    target interpreter, with nothing but the unpacked zip, records a result event of an SMN
    trigger in the real PostgreSQL through index.history_handler (once, however often it comes)
    and reads it back with the packaged psycopg."""
    interpreter = find_interpreter(python)
    if interpreter is None:
        message = f"no Python {python} interpreter (PATH or pyenv)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true")
        pytest.skip(message)
    history = "postgresql://u:s3cret@db:5432/h"
    arguments = ["package", "--python", python, "--out", str(tmp_path / "dist")]
    if given == "option":
        monkeypatch.setenv("ECS_DETACH_HISTORY", "off")  # the option wins over the setting
        arguments += ["--history", history]
    else:
        monkeypatch.setenv("ECS_DETACH_HISTORY", history)
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert "added extras  postgres: the URLs or the webhook routes need them" in text
    assert "s3cret" not in text
    (zipped,) = (tmp_path / "dist").glob("*.zip")
    manifest = json.loads(zipped.with_name(zipped.stem + ".manifest.json").read_text())
    assert manifest["extras"] == ["postgres"]
    assert manifest["bytecode"] == python
    assert {"psycopg==3.3.9", "psycopg-binary==3.3.9"} <= set(manifest["distributions"])
    assert zipped.stat().st_size <= DIRECT_UPLOAD_BYTES, zipped.stat().st_size
    unpacked = tmp_path / "code"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(unpacked)
    result = result_event(
        DetachResult(
            server_id=WEB1,
            volume_id=WEB1_DATA,
            idempotency_key=f"pg-package-{python}",
            outcome=Outcome.SUCCEEDED,
            job_id="ff8080814dbd65d7014dc2a9b5bb0a49",
            request_id="169dc146951248f0b2c047a20f723608",
            status="SUCCESS",
            polls=2,
            duration_s=4.5,
        ),
        source="ecs-detach/poll",
    )
    trigger = json.loads((EVENTS / "fg-smn-trigger-cloudeye.json").read_text())
    trigger["record"] = trigger["record"][:1]
    trigger["record"][0]["smn"]["message"] = result.model_dump_json()
    trigger["record"][0]["smn"]["topic_urn"] = "urn:smn:ap-southeast-1:0123456789abcdef0123456789abcdef:r"
    env = {"PATH": os.defpath, "PYTHONPATH": str(unpacked), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [str(interpreter), "-S", "-c", HISTORY_SCRIPT, json.dumps(trigger), postgres_url],
        cwd=unpacked,
        env={**env, "ECS_DETACH_HISTORY": postgres_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout.splitlines()[-1])
    assert output["python"] == python
    assert output["psycopg"].startswith(str(unpacked)), output["psycopg"]
    assert output["libpq"] == "binary"
    assert output["first"] == {"messages": 1, "recorded": 1}
    assert output["again"] == {"messages": 1, "recorded": 0}  # redelivered: recorded once
    assert output["trails"] == [
        {
            "outcome": "succeeded",
            "job_id": "ff8080814dbd65d7014dc2a9b5bb0a49",
            "steps": ["detach.accepted", "detach.result"],
        }
    ]

"""The FunctionGraph code package: ``handler`` and its runtime dependencies in one reproducible zip.

Dependencies are the ``[project] dependencies`` of pyproject.toml (plus any extras asked for),
resolved and fetched by pip as manylinux2014 x86_64 wheels for the target CPython, whichever
Python runs the build. pip evaluates environment markers against the Python it runs on, so the
resolution is completed here with the target's markers (e.g. ``exceptiongroup`` for 3.10).
The wheels are installed with ``pip install --target`` and zipped with sorted entries, a fixed
timestamp and fixed permissions: the same wheels give a byte-identical zip.

The package carries bytecode: FunctionGraph's code folder is read-only, so a package without
``.pyc`` files compiles every module it imports on every cold start. The ``.pyc`` files are
compiled by the target CPython itself (the running one, ``python3.X`` on ``PATH`` or a pyenv
version), as unchecked-hash files: valid whatever timestamps the unpacked files get, never
rewritten. They hold no docstrings (``_COMPILE``): a function instance never reads one, and they
cost memory in every instance. Without that interpreter the package ships no bytecode, and the report says so.

Versions come from ``package-constraints.txt`` beside this module (``CONSTRAINTS``): one set for
every supported Python, so 3.10 and 3.12 builds get the same versions and a commit builds the
same package next month. ``update_constraints`` (``make package-constraints``) renews it.

Beside the zip goes ``{zip stem}.manifest.json``: its sha256, Python and extras, which
infra/terraform checks against the URLs it configures. A build given the deployment's URLs
adds the extra each of them needs (``handler.support.extras``), and ``webhook_routes`` adds the
``webhooks`` extra of the API Gateway trigger's routes.

The package holds no web framework, CLI, emulator or build code: ``handler/local/`` (``EXCLUDED_FOLDER``)
stays out, and a build fails if a forbidden top-level name gets in.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from handler.errors import EcsDetachError
from handler.support.extras import EXTRA_MODULES, WEBHOOKS, needs

PROJECT = "ecs-detach"
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12")  # FunctionGraph offers 3.10 and 3.12; 3.11 builds locally
FUNCTIONGRAPH_PYTHONS = ("3.10", "3.12")
PLATFORM = "manylinux2014_x86_64"
HANDLER_MODULE = "handler.entry.functiongraph"
# detach, poll, flush, outbox relay, notify, history recorder, initializer
HANDLERS = (
    "handler",
    "poll_handler",
    "flush_handler",
    "relay_handler",
    "notify_handler",
    "history_handler",
    "init",
)
# FunctionGraph's handler is "{file}.{function}" in the code root (the console's default is
# index.handler); whether a dotted package path is accepted is not documented, so the package
# carries index.py, and the functions are configured as index.handler, index.poll_handler, …
ENTRY_FILE = "index.py"
ENTRY_SOURCE = f'''"""FunctionGraph's entry file: the handlers are index.{", index.".join(HANDLERS)}.

The implementation is {HANDLER_MODULE}.
"""

import gc

# A new instance: no cyclic garbage collection until its first invocation ends (the
# implementation resumes it; docs/performance.md).
gc.disable()

from {HANDLER_MODULE} import {", ".join(sorted(HANDLERS))}  # noqa: E402

__all__ = {sorted(HANDLERS)!r}
'''

# The IAM actions the functions call (docs/security.md): the policy in infra/terraform grants
# exactly these, plus SMN_PUBLISH_ACTION on the topics when SMN carries them.
IAM_ACTIONS = frozenset(
    {
        "ecs:cloudServers:detachVolume",
        "ecs:cloudServers:get",
        "ecs:cloudServers:listServerBlockDevices",
        "evs:volumes:get",
    }
)
SMN_PUBLISH_ACTION = "smn:topic:publish"

# handler/local/ needs a web framework, the emulator or the build tools: it never ships.
EXCLUDED_FOLDER = "handler/local"

# Top-level names that must never be in the package.
FORBIDDEN_TOP_LEVEL = frozenset(
    {"emulator", "starlette", "uvicorn", "flask", "functions_framework", "rich", "werkzeug", "gunicorn"}
)

# The pinned versions of every runtime distribution, for every supported Python.
CONSTRAINTS = Path(__file__).resolve().with_name("package-constraints.txt")
# The extras a FunctionGraph package may carry: the broker and store clients.
PACKAGE_EXTRAS = tuple(sorted(EXTRA_MODULES))
MANIFEST_SUFFIX = ".manifest.json"

_HANDLER_DIR = Path(__file__).resolve().parents[1]
_PYPROJECT = _HANDLER_DIR.parent / "pyproject.toml"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--
_MAX_ROUNDS = 5
# FunctionGraph's limit for a function's zip uploaded directly: 40 MB in the console (50 MB through
# the API, as Terraform's func_code; 10 MB is the limit for a *dependency* package), docs/cloud-api.md §7
DIRECT_UPLOAD_BYTES = 40 * 1000 * 1000


class PackageError(EcsDetachError, RuntimeError):
    """The package cannot be built; the message says why."""


@dataclass(frozen=True)
class Pin:
    """One resolved distribution."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class TopLevel:
    """One top-level entry of the package (a package, a module or a ``.dist-info`` folder)."""

    name: str
    files: int
    bytes: int


@dataclass(frozen=True)
class PackageReport:
    """What was built: where, for which Python, how big, and what is inside."""

    path: Path
    python: str
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    top_level: tuple[TopLevel, ...]
    distributions: tuple[Pin, ...]
    import_checked: bool
    extras: tuple[str, ...]
    added_extras: tuple[str, ...]  # not asked for, but needed by the URLs or the webhook routes
    bytecode: Path | None  # the interpreter that compiled the .pyc files; None: no bytecode
    compiled: int  # how many modules have a .pyc
    bytecode_trimmed: bool  # only the detach path's modules have one: all would exceed the limit
    manifest: Path


def build_package(
    python: str,
    out: Path,
    *,
    extras: Sequence[str] = (),
    urls: Sequence[tuple[str, str]] = (),
    webhook_routes: bool = False,
    wheelhouse: Path | None = None,
) -> PackageReport:
    """Build ``out/ecs-detach-{version}-py{XY}.zip`` for FunctionGraph's CPython ``python``, and
    its manifest beside it.

    ``extras`` adds optional dependency groups (e.g. ``redis`` for a DCS store); ``urls`` are
    the deployment's ``(option, URL)`` pairs (topics, store): the extra a URL's backend needs is
    added, as is the ``webhooks`` extra when the function serves the ``webhook_routes`` (an API
    Gateway trigger). ``wheelhouse`` keeps the downloaded wheels between builds (a temporary
    folder otherwise). The target interpreter (``find_interpreter``) compiles the bytecode.
    When ``python`` is the running version, the handler module is imported from the package alone.
    """
    _check_python(python)
    needed = {need.extra for need in needs(urls)} | ({WEBHOOKS} if webhook_routes else set())
    added = tuple(sorted(needed - set(extras)))
    extras = sorted(set(extras) | needed)
    compiler = find_interpreter(python)
    pins = resolve(python, extras=extras)
    version = _project_version()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{PROJECT}-{version}-py{python.replace('.', '')}.zip"
    with tempfile.TemporaryDirectory(prefix="ecs-detach-package-") as tmp:
        wheels = wheelhouse / f"cp{python.replace('.', '')}" if wheelhouse else Path(tmp, "wheels")
        staging = Path(tmp, "staging")
        _pip("download", "--no-deps", "--dest", str(wheels), *_target_options(python), *map(str, pins))
        _pip(
            "install",
            "--no-deps",
            "--no-index",
            "--find-links",
            str(wheels),
            "--target",
            str(staging),
            "--no-compile",
            "--no-warn-script-location",
            *_target_options(python),
            *map(str, pins),
        )
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: shebangs of this machine
        _copy_handler(staging)
        if (staging / ENTRY_FILE).exists():
            raise PackageError(f"{ENTRY_FILE} would overwrite a file of a dependency")
        (staging / ENTRY_FILE).write_text(ENTRY_SOURCE)
        _check_content(staging)
        bytecode = compile_bytecode(compiler, staging) if compiler is not None else None
        import_checked = python == _running_python()
        if import_checked:
            check_import(staging)
        files, compiled = _fit(staging, target, bytecode)
    sha256 = hashlib.sha256(target.read_bytes()).hexdigest()
    chosen = tuple(sorted(set(extras)))
    manifest = target.with_name(target.name.removesuffix(".zip") + MANIFEST_SUFFIX)
    manifest.write_text(
        json.dumps(
            {
                "package": target.name,
                "sha256": sha256,
                "python": python,
                "extras": list(chosen),
                "bytecode": python if compiler is not None else None,
                "distributions": [str(pin) for pin in sorted(pins, key=lambda pin: pin.name)],
            },
            indent=2,
        )
        + "\n"
    )
    return PackageReport(
        path=target,
        python=python,
        sha256=sha256,
        zipped_bytes=target.stat().st_size,
        unzipped_bytes=sum(size for _, size in files),
        files=len(files),
        top_level=_top_level(files),
        distributions=tuple(sorted(pins, key=lambda pin: pin.name)),
        import_checked=import_checked,
        extras=chosen,
        added_extras=added,
        bytecode=compiler,
        compiled=compiled,
        bytecode_trimmed=bytecode is not None and compiled < len(bytecode.detach_path) + len(bytecode.others),
        manifest=manifest,
    )


def resolve(
    python: str, *, extras: Sequence[str] = (), constraints: Path | None = CONSTRAINTS
) -> tuple[Pin, ...]:
    """The runtime distributions for CPython ``python`` on manylinux2014 x86_64, pinned.

    pip resolves (``install --dry-run --report``) within ``constraints`` (None: the newest
    versions); its markers are the running Python's, so the closure is recomputed with the
    target's markers and anything pip left out is asked for in another round.
    """
    _check_python(python)
    environment = target_environment(python)
    wanted = runtime_requirements(extras, environment)
    extra_requirements: list[Requirement] = []
    for _ in range(_MAX_ROUNDS):
        resolved = _pip_resolve(python, [*wanted, *extra_requirements], constraints)
        needed, missing = _closure(wanted, resolved, environment)
        if not missing:
            return tuple(Pin(resolved[name][0], resolved[name][1]) for name in sorted(needed))
        extra_requirements += missing
    raise PackageError(f"dependencies for Python {python} did not settle after {_MAX_ROUNDS} rounds")


def update_constraints(path: Path = CONSTRAINTS) -> list[Pin]:
    """Pin every runtime distribution (all PACKAGE_EXTRAS) for all FunctionGraph Pythons at once
    and write the pins to ``path``. The oldest Python resolves first, to the newest versions it
    can run; each later one resolves within those pins (adding what only it needs), so every
    Python builds with the same versions even where a newer release dropped the oldest."""
    pins: dict[str, Pin] = {}
    with tempfile.TemporaryDirectory(prefix="ecs-detach-constraints-") as tmp:
        so_far = Path(tmp, "constraints.txt")
        for python in FUNCTIONGRAPH_PYTHONS:
            so_far.write_text("".join(f"{pin}\n" for pin in pins.values()))
            for pin in resolve(python, extras=PACKAGE_EXTRAS, constraints=so_far):
                pins.setdefault(canonicalize_name(pin.name), pin)
    ordered = sorted(pins.values(), key=lambda pin: canonicalize_name(pin.name))
    header = (
        "# The versions `ecs-detach package` puts in the FunctionGraph package, the same for every\n"
        "# FunctionGraph Python (3.10 resolved first). Renew with: make package-constraints\n"
    )
    path.write_text(header + "".join(f"{pin}\n" for pin in ordered))
    return ordered


def runtime_requirements(extras: Sequence[str], environment: Mapping[str, str]) -> list[Requirement]:
    """``[project] dependencies`` and the ``extras`` asked for, from pyproject.toml when this is a
    source tree with a TOML reader (Python 3.11+, or tomli on 3.10), else from the installed
    distribution's metadata; markers are evaluated for ``environment``."""
    project = _pyproject()
    if project is not None:
        optional: dict[str, list[str]] = project.get("optional-dependencies", {})
        unknown = sorted(set(extras) - set(optional))
        if unknown:
            raise PackageError(f"unknown extra(s) {', '.join(unknown)}; known: {', '.join(sorted(optional))}")
        lines = [*project["dependencies"], *(line for extra in extras for line in optional[extra])]
        requirements = [_requirement(line) for line in lines]
        return [r for r in requirements if r.marker is None or r.marker.evaluate(dict(environment))]
    lines = importlib.metadata.requires(PROJECT) or []
    requirements = [_requirement(line) for line in lines]
    return [r for r in requirements if _applies(r, environment, extras)]


def target_environment(python: str) -> dict[str, str]:
    """Marker environment of FunctionGraph's CPython ``python`` on Linux x86_64."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


def check_import(package_dir: Path) -> None:
    """Import the FunctionGraph handler module with only ``package_dir`` on ``sys.path`` (no site
    packages: ``-S``) and check that no forbidden module can be found there."""
    code = (
        "import importlib, importlib.util, sys\n"
        f"module = importlib.import_module({ENTRY_FILE.removesuffix('.py')!r})\n"
        f"missing = [name for name in {HANDLERS!r} if not callable(getattr(module, name, None))]\n"
        f"found = [name for name in {sorted(FORBIDDEN_TOP_LEVEL)!r} if importlib.util.find_spec(name)]\n"
        "if missing or found:\n"
        "    sys.exit(f'handlers missing: {missing}; forbidden modules found: {found}')\n"
    )
    result = subprocess.run(  # noqa: S603 - the running interpreter, fixed arguments
        [sys.executable, "-S", "-B", "-c", code],
        env={"PYTHONPATH": str(package_dir), "PATH": os.defpath},
        cwd=package_dir,  # sys.path[0] is the working folder: not this source tree
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise PackageError(
            f"{HANDLER_MODULE} does not import from the package alone: {result.stderr.strip()}"
        )


def find_interpreter(python: str) -> Path | None:
    """A CPython ``python`` on this machine: the running one, ``python{python}`` on ``PATH``, or
    the newest pyenv version of it (``$PYENV_ROOT``, default ``~/.pyenv``); None if none is."""
    if python == _running_python():
        return Path(sys.executable)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    pyenv = sorted(
        root.glob(f"versions/{python}.*/bin/python{python}"),
        key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
        reverse=True,
    )
    on_path = shutil.which(f"python{python}")
    for candidate in [*([Path(on_path)] if on_path else []), *pyenv]:
        if interpreter_version(candidate) == python:
            return candidate
    return None


def interpreter_version(interpreter: Path) -> str | None:
    """``major.minor`` of the CPython at ``interpreter``; None if it does not run or is not CPython."""
    code = "import sys; print(sys.implementation.name, '%d.%d' % sys.version_info[:2])"
    try:
        result = subprocess.run(  # noqa: S603 - an interpreter this module found or was given
            [str(interpreter), "-I", "-c", code], capture_output=True, text=True, check=False, timeout=60
        )
    except OSError:
        return None
    name, _, version = result.stdout.strip().partition(" ")
    return version if result.returncode == 0 and name == "cpython" else None


# Run by the target interpreter in the staging folder: which files the handlers import. It hands
# one detach request to ``handler`` against a closed local port (the detach path: what a first
# event loads, lazily loaded HTTP connection stack, store and topic included), then imports every
# module of ``handler`` (the other triggers' and the webhook routes' modules; those needing an
# absent extra fail and are left out). It prints its cache tag and the files of both sets: every
# module file found, also of imports that then failed (httpcore tries its HTTP/2 modules on each
# first connection: compiled there every cold start if they had no bytecode).
_TRACE = """
import importlib, importlib.machinery, json, os, pkgutil, sys, tempfile
sys.path.insert(0, os.getcwd())
found = set()
class Record:
    @staticmethod
    def find_spec(name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.origin:
            found.add(spec.origin)
        return None  # the usual finders load it
sys.meta_path.insert(0, Record)
def files():
    return sorted(found)
import index, handler
with tempfile.TemporaryDirectory() as scratch:
    os.environ.update(
        HUAWEICLOUD_SDK_AK="TRACE", HUAWEICLOUD_SDK_SK="trace", HUAWEICLOUD_SDK_PROJECT_ID="0" * 32,
        ECS_DETACH_ECS_ENDPOINT="http://127.0.0.1:9", ECS_DETACH_LOG_LEVEL="CRITICAL",
        ECS_DETACH_STORE=f"sqlite:///{scratch}/store.db",
        ECS_DETACH_JOBS_TOPIC=f"sqlite:///{scratch}/topics.db?topic=jobs",
        ECS_DETACH_RESULTS_TOPIC=f"sqlite:///{scratch}/topics.db?topic=results",
        ECS_DETACH_HISTORY=f"sqlite:///{scratch}/history.db",
    )
    try:
        uuid = "00000000-0000-4000-8000-000000000000"
        index.handler({"server_id": uuid, "volume_id": uuid, "idempotency_key": "trace"})
    except Exception:
        pass
detach = files()
for module in pkgutil.walk_packages(handler.__path__, "handler."):
    try:
        importlib.import_module(module.name)
    except ImportError:
        pass
print(json.dumps([sys.implementation.cache_tag, detach, files()]))
"""


# Run by the target interpreter in the staging folder on the listed files (paths relative to it):
# each compiled as ``compileall`` compiles it (the name in its code objects relative, so the zip
# does not depend on the staging folder), but without docstrings, and written as an
# unchecked-hash ``.pyc`` (PEP 552: flags 0b01, the source's hash, never checked). The docstrings
# go as ``python -OO`` drops them, the asserts stay (``-OO`` would drop those too), and every
# line number is the source's, so tracebacks point where they did. Nothing in a function reads a
# docstring (pydantic reads a model's only for its JSON Schema, which the package never makes);
# they were about 0.7 MiB of a cold start's peak RSS (docs/performance.md).
_COMPILE = """
import ast, importlib.util, marshal, os, sys
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
def is_docstring(statement):
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(
        statement.value.value, str
    )
def undocumented(tree):
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED) and node.body and is_docstring(node.body[0]):
            docstring = node.body.pop(0)
            if not node.body:
                node.body.append(ast.copy_location(ast.Pass(), docstring))
    return tree
failed = []
for name in open(sys.argv[1]).read().splitlines():
    with open(name, "rb") as file:
        source = file.read()
    try:
        code = compile(undocumented(ast.parse(source, name)), name, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as error:
        failed.append(f"{name}: {error}")
        continue
    target = importlib.util.cache_from_source(name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as file:
        file.write(importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little"))
        file.write(importlib.util.source_hash(source) + marshal.dumps(code))
print("\\n".join(failed))
raise SystemExit(1 if failed else 0)
"""


@dataclass(frozen=True)
class Bytecode:
    """The ``.pyc`` files compiled into a staging folder: all the handlers import, and the
    subset the detach path needs (kept when the package must shrink: ``_fit``)."""

    interpreter: Path
    cache_tag: str
    detach_path: tuple[Path, ...]
    others: tuple[Path, ...]


def compile_bytecode(interpreter: Path, staging: Path) -> Bytecode:
    """The modules of ``staging`` the handlers import (``_TRACE``), compiled by ``interpreter``
    to unchecked-hash ``.pyc`` files in ``__pycache__``: never checked against their source, so
    valid in a read-only folder whatever timestamps the unpacked files get. Modules nothing
    imports (pydantic.v1, anyio's async backends, …) get none: they would only make the zip
    bigger. Recorded paths are relative to ``staging``."""
    traced = subprocess.run(  # noqa: S603 - the target interpreter, fixed arguments
        [str(interpreter), "-I", "-S", "-B", "-c", _TRACE],
        cwd=staging,  # the folder is the package's: nothing is written there (-B, files in /tmp)
        env={"PATH": os.defpath},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if traced.returncode != 0:
        raise PackageError(f"{interpreter} could not import the package: {traced.stderr.strip()[-2000:]}")
    root = staging.resolve()
    cache_tag, detach, everything = json.loads(traced.stdout.strip().splitlines()[-1])

    def sources(names: list[str]) -> set[Path]:
        return {
            path
            for name in names
            if name.endswith(".py") and (path := Path(name).resolve()).is_relative_to(root)
        }

    on_path, files = sources(detach), sources(everything)
    listing = staging.parent / "bytecode.txt"
    listing.write_text("".join(f"{name.relative_to(root)}\n" for name in sorted(files)))
    result = subprocess.run(  # noqa: S603 - the target interpreter, fixed arguments
        [str(interpreter), "-I", "-S", "-B", "-c", _COMPILE, str(listing)],
        cwd=root,
        env={"PATH": os.defpath},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise PackageError(f"{interpreter} could not compile the package: {result.stdout.strip()[-2000:]}")
    return Bytecode(interpreter, cache_tag, tuple(sorted(on_path)), tuple(sorted(files - on_path)))


def _pyc(source: Path, cache_tag: str) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"


def _fit(staging: Path, target: Path, bytecode: Bytecode | None) -> tuple[list[tuple[str, int]], int]:
    """Zip ``staging`` to ``target``; if the zip is over FunctionGraph's direct upload limit,
    again without the bytecode of the modules off the detach path (they compile at their first
    use). The zipped files and how many modules kept their ``.pyc``."""
    files = _write_zip(staging, target)
    if bytecode is None:
        return files, 0
    if target.stat().st_size <= DIRECT_UPLOAD_BYTES or not bytecode.others:
        return files, len(bytecode.detach_path) + len(bytecode.others)
    for source in bytecode.others:
        _pyc(source, bytecode.cache_tag).unlink()
    return _write_zip(staging, target), len(bytecode.detach_path)


def format_report(report: PackageReport) -> str:
    """The report as a person reads it at a terminal."""
    checked = (
        "imported from the package alone"
        if report.import_checked
        else f"not imported here (built for {report.python} on {_running_python()})"
    )
    shown = [entry for entry in report.top_level if not entry.name.endswith(".dist-info/")]
    metadata = [entry for entry in report.top_level if entry.name.endswith(".dist-info/")]
    width = max(len(entry.name) for entry in shown) + 1
    lines = [
        f"ecs-detach package for FunctionGraph Python {report.python}",
        f"  file          {report.path}",
        f"  sha256        {report.sha256}",
        f"  size          {_size(report.zipped_bytes)} zipped, {_size(report.unzipped_bytes)} unzipped, "
        f"{report.files:,} files",
        f"  manifest      {report.manifest} (extras: {', '.join(report.extras) or 'none'})",
        *(
            [f"  added extras  {', '.join(report.added_extras)}: the URLs or the webhook routes need them"]
            if report.added_extras
            else []
        ),
        f"  bytecode      {_bytecode(report)}",
        f"  handlers      index.{{{', '.join(HANDLERS)}}} ({ENTRY_FILE} → {HANDLER_MODULE}): {checked}",
        f"  dependencies  {', '.join(map(str, report.distributions))}",
        "  top level",
        *(f"    {entry.name:<{width}} {_size(entry.bytes):>10}  {entry.files:>5} files" for entry in shown),
        f"    {'*.dist-info/':<{width}} {_size(sum(e.bytes for e in metadata)):>10}  "
        f"{sum(e.files for e in metadata):>5} files in {len(metadata)} folders",
    ]
    return "\n".join(lines)


def _bytecode(report: PackageReport) -> str:
    if report.bytecode is not None:
        which = (
            "of the detach path (with every module the handlers import, the zip would exceed "
            f"FunctionGraph's {DIRECT_UPLOAD_BYTES // 1000 // 1000} MB direct upload)"
            if report.bytecode_trimmed
            else "the handlers import"
        )
        return (
            f"unchecked-hash .pyc of the {report.compiled} modules {which}, compiled by {report.bytecode} "
            "without docstrings"
        )
    return (
        f"none: no Python {report.python} interpreter on PATH (python{report.python}) or in pyenv; "
        f"every cold start will compile each module it imports (the code folder is read-only). "
        f"Install Python {report.python} (e.g. pyenv install {report.python}) and build again"
    )


def _check_python(python: str) -> None:
    if python not in SUPPORTED_PYTHONS:
        raise PackageError(
            f"Python {python!r} is not supported; choose one of {', '.join(SUPPORTED_PYTHONS)}"
        )


def _running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _target_options(python: str) -> list[str]:
    return [
        "--only-binary=:all:",
        "--platform",
        PLATFORM,
        "--python-version",
        python,
        "--implementation",
        "cp",
    ]


def _pip(*arguments: str) -> str:
    command = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        *arguments,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)  # noqa: S603
    if result.returncode != 0:
        raise PackageError(f"pip {arguments[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _pip_resolve(
    python: str, requirements: Iterable[Requirement], constraints: Path | None
) -> dict[str, tuple[str, str, list[str]]]:
    """pip's resolution: canonical name → (name, version, Requires-Dist lines)."""
    with tempfile.TemporaryDirectory(prefix="ecs-detach-resolve-") as tmp:
        report = Path(tmp, "report.json")
        _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            *(["--constraint", str(constraints)] if constraints is not None else []),
            *_target_options(python),
            *map(str, requirements),
        )
        items: list[dict[str, Any]] = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): (
            item["metadata"]["name"],
            item["metadata"]["version"],
            list(item["metadata"].get("requires_dist") or []),
        )
        for item in items
    }


def _closure(
    wanted: Sequence[Requirement],
    resolved: Mapping[str, tuple[str, str, list[str]]],
    environment: Mapping[str, str],
) -> tuple[set[str], list[Requirement]]:
    """The distributions the target needs (by canonical name) and the requirements pip missed."""
    extras: dict[str, set[str]] = {}
    queue = list(wanted)
    missing: list[Requirement] = []
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        new_extras = set(requirement.extras) - extras.get(name, set())
        if name in extras and not new_extras:
            continue
        extras.setdefault(name, set()).update(requirement.extras)
        if name not in resolved:
            missing.append(_without_marker(requirement))
            continue
        dependencies = [_requirement(line) for line in resolved[name][2]]
        queue += [r for r in dependencies if _applies(r, environment, sorted(extras[name]))]
    return set(extras) - {canonicalize_name(r.name) for r in missing}, missing


def _applies(requirement: Requirement, environment: Mapping[str, str], extras: Sequence[str]) -> bool:
    marker = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras))


def _requirement(line: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as error:
        raise PackageError(f"invalid requirement {line!r}: {error}") from None


def _without_marker(requirement: Requirement) -> Requirement:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return Requirement(f"{requirement.name}{extras}{requirement.specifier}")


def _pyproject() -> dict[str, Any] | None:
    """The ``[project]`` table of the source tree's pyproject.toml, or None."""
    if not _PYPROJECT.is_file():
        return None
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]  # noqa: PLC0415
        except ModuleNotFoundError:
            return None
    with _PYPROJECT.open("rb") as file:
        document: dict[str, Any] = tomllib.load(file)
    project: dict[str, Any] = document["project"]
    return project


def _project_version() -> str:
    project = _pyproject()
    return str(project["version"]) if project is not None else importlib.metadata.version(PROJECT)


def _copy_handler(staging: Path) -> None:
    """``handler/`` without ``handler/local/`` and bytecode."""
    for source in sorted(_HANDLER_DIR.rglob("*")):
        relative = PurePosixPath(source.relative_to(_HANDLER_DIR.parent).as_posix())
        if (
            not source.is_file()
            or "__pycache__" in relative.parts
            or relative.suffix in (".pyc", ".pyo")
            or str(relative).startswith(EXCLUDED_FOLDER + "/")
        ):
            continue
        destination = staging / relative
        if destination.exists():
            raise PackageError(f"{relative} would overwrite a file of a dependency")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def _check_content(staging: Path) -> None:
    names = {path.name.split(".")[0].split("-")[0].lower() for path in staging.iterdir()}
    forbidden = sorted(names & FORBIDDEN_TOP_LEVEL)
    if forbidden:
        raise PackageError(f"the package would hold {', '.join(forbidden)}: not allowed in FunctionGraph")
    tree = ast.parse((staging / (HANDLER_MODULE.replace(".", "/") + ".py")).read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    absent = sorted(set(HANDLERS) - defined)
    if absent:
        raise PackageError(f"{HANDLER_MODULE} defines no {', '.join(absent)}")


def _write_zip(staging: Path, target: Path) -> list[tuple[str, int]]:
    """Zip ``staging`` reproducibly; the (name, size) of each file."""
    files = sorted(
        (path.relative_to(staging).as_posix(), path) for path in staging.rglob("*") if path.is_file()
    )
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that external_attr carries the mode
            info.external_attr = _FILE_MODE
            archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    partial.replace(target)
    return [(name, path.stat().st_size) for name, path in files]


def _top_level(files: Sequence[tuple[str, int]]) -> tuple[TopLevel, ...]:
    groups: dict[str, list[int]] = {}
    for name, size in files:
        head, _, rest = name.partition("/")
        groups.setdefault(f"{head}/" if rest else head, []).append(size)
    return tuple(TopLevel(name, len(sizes), sum(sizes)) for name, sizes in sorted(groups.items()))


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MiB" if count >= 1024 * 1024 else f"{count / 1024:.1f} KiB"


if __name__ == "__main__":  # make package-constraints
    for pinned in update_constraints():
        print(pinned)

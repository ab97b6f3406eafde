"""What every benchmark scenario shares: the two environments under test, the emulator as a
separate process, figures with their targets, and the results file.

The two sides never share a process. ``ours`` runs from the unpacked FunctionGraph code package
(``ecs-detach package`` for the running Python, with the bytecode it ships), ``sdk`` from a
``pip install --target`` of the official SDK pinned below (with the bytecode pip compiled), or
from that folder zipped as it is and unpacked (``sdk_shipped_dir``). Each child process is
started with ``python -S`` and that one folder first on ``sys.path``, so neither sees the other's
packages or this checkout's ``.venv``. The SDK is installed only under ``.bench/``, never as a
dependency of the project.
"""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"  # built environments and scratch space (git-ignored)
RESULTS = ROOT / "bench" / "results" / "latest.json"
SDK_VERSION = "3.1.219"  # the SDK version the emulator was checked against
SDK_REQUIREMENT = f"huaweicloudsdkecs=={SDK_VERSION}"
# What a function on the SDK making our calls needs: ECS (server, detach) and EVS (volume).
SDK_CALLS_REQUIREMENTS = (SDK_REQUIREMENT, f"huaweicloudsdkevs=={SDK_VERSION}")
# Set for every child that stands for FunctionGraph's read-only code folder: Python then never
# writes bytecode, as it cannot there (file modes alone do not stop root, who runs this here).
READ_ONLY_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
DEMO_AK = "DEMOACCESSKEY0000000"
DEMO_SK = "demo-secret-key-for-the-local-emulator-0"
DEMO_PROJECT = "0123456789abcdef0123456789abcdef"
DEVICES = [f"/dev/vd{letter}" for letter in "bcdefghijklmnopqrstuvwxyz"]
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


# ---------------------------------------------------------------- the two environments


def _pip_target(name: str, requirements: Sequence[str]) -> Path:
    """``requirements`` installed with ``pip install --target .bench/{name}`` (bytecode compiled
    by pip, as it does by default); built once, reused while the requirements are the same."""
    target = WORK / name
    stamp = target / STAMP
    wanted = " ".join(requirements)
    if not (stamp.exists() and stamp.read_text() == wanted):
        subprocess.run(  # noqa: S603 (pip with fixed arguments)
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--upgrade",
                "--target",
                str(target),
                *requirements,
            ],
            check=True,
        )
        stamp.write_text(wanted)
    return target


STAMP = ".requirement"  # written by _pip_target, not part of the SDK


def sdk_dir() -> Path:
    """The official SDK installed on its own, its bytecode valid (pip compiled it)."""
    return _pip_target("sdk", [SDK_REQUIREMENT])


def sdk_calls_dir() -> Path:
    """The SDK's ECS and EVS clients: what a function on the SDK making our calls ships."""
    return _pip_target("sdk-calls", SDK_CALLS_REQUIREMENTS)


def sdk_files(root: Path, *, bytecode: bool = True) -> list[Path]:
    """The SDK's installed files: everything under ``root`` but the stamp (and the bytecode
    unless ``bytecode``)."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.relative_to(root).as_posix() != STAMP
        and (bytecode or "__pycache__" not in path.parts)
    )


def zip_files(root: Path, files: list[Path], target: Path) -> int:
    """``files`` (under ``root``) zipped to ``target`` with deflate level 9; its size in bytes."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return target.stat().st_size


def sdk_zip() -> Path:
    """The SDK as one would ship it: the ``pip install --target`` folder zipped as it is."""
    target = WORK / "sdk.zip"
    root = sdk_dir()
    if not target.exists() or target.stat().st_mtime < (root / STAMP).stat().st_mtime:
        zip_files(root, sdk_files(root), target)
    return target


def package_zip(*, webhook_routes: bool = False) -> Path:
    """The FunctionGraph code package for the running Python, built from this checkout (default
    extras, or with the webhook routes' extra)."""
    from handler.local.package import build_package  # noqa: PLC0415 (needs the dev extras)

    out = WORK / ("dist-webhooks" if webhook_routes else "dist")
    return build_package(PYTHON_VERSION, out, webhook_routes=webhook_routes, wheelhouse=WORK / "wheels").path


def unpacked(archive: Path, name: str) -> Path:
    """``archive`` unpacked into ``.bench/{name}`` as the platform unpacks it (afresh; the files
    get the time of unpacking, so bytecode checked against timestamps no longer matches), with
    every file and folder made read-only."""
    target = WORK / name
    if target.exists():
        subprocess.run(["chmod", "-R", "u+w", str(target)], check=True)  # noqa: S603, S607
        subprocess.run(["rm", "-rf", str(target)], check=True)  # noqa: S603, S607
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(target)
    subprocess.run(["chmod", "-R", "a-w", str(target)], check=True)  # noqa: S603, S607
    return target


def ours_dir() -> Path:
    """The FunctionGraph code package as shipped (default extras, its bytecode), unpacked."""
    return unpacked(package_zip(), "ours")


def sdk_shipped_dir() -> Path:
    """The SDK as shipped (``sdk_zip``), unpacked the same way as ours."""
    return unpacked(sdk_zip(), "sdk-shipped")


def child_command(path: Path, code: str, *, flags: Sequence[str] = (), args: Sequence[str] = ()) -> list[str]:
    """The command line of a child: a fresh ``python -S`` (with ``flags``) running ``code`` with
    ``path`` first on ``sys.path`` and ``args`` in ``sys.argv``."""
    prelude = f"import sys; sys.path.insert(0, {str(path)!r})\n"
    return [sys.executable, *flags, "-S", "-c", prelude + code, *args]


def child(path: Path, code: str, env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """Run ``code`` in a fresh ``python -S`` with ``path`` first on ``sys.path``; the code prints
    one JSON object on its last line of stdout, which is returned."""
    proc = subprocess.run(  # noqa: S603 (our own interpreter and code)
        child_command(path, code),
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def clean_env() -> dict[str, str]:
    """The parent's environment without anything that could steer a child (only PATH, HOME,
    locale and TMPDIR): each side gets exactly the settings its scenario gives it."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


# ---------------------------------------------------------------- the emulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_seed(servers: int, disks: int, seed: int = 7) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A seed of ``servers`` servers with ``disks`` data disks each; the (server, volume) pairs."""
    rng = random.Random(seed)  # noqa: S311 (repeatable ids, not crypto)
    if disks > len(DEVICES):
        raise ValueError(f"at most {len(DEVICES)} data disks per server")

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    volumes: list[dict[str, Any]] = []
    server_list: list[dict[str, Any]] = []
    pairs: list[tuple[str, str]] = []
    for s in range(servers):
        server_id, root = uid(), uid()
        volumes.append({"id": root, "name": f"sys-{s}", "bootable": True})
        attachments = [{"volume_id": root, "device": "/dev/vda"}]
        for d in range(disks):
            volume_id = uid()
            volumes.append({"id": volume_id, "name": f"data-{s}-{d}"})
            attachments.append({"volume_id": volume_id, "device": DEVICES[d]})
            pairs.append((server_id, volume_id))
        server_list.append(
            {
                "id": server_id,
                "name": f"bench-{s}",
                "tags": {"auto-remediation": "true"},
                "attachments": attachments,
            }
        )
    return {"volumes": volumes, "servers": server_list}, pairs


class Emulator:
    """``ecs-detach emulator`` in its own process (so its CPU is never counted as the client's),
    driven through its admin API."""

    def __init__(self, seed: dict[str, Any], job_duration_s: float = 0.5) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-emulator-")
        seed_file = Path(self._dir.name) / "seed.json"
        seed_file.write_text(json.dumps(seed))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = (Path(self._dir.name) / "emulator.log").open("wb")
        self._proc = subprocess.Popen(  # noqa: S603 (our own command line)
            [
                *(sys.executable, "-m", "handler.local.cli", "emulator", "--port", str(self.port)),
                *("--seed", str(seed_file), "--job-duration", str(job_duration_s)),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ECS_DETACH_LOG_LEVEL": "WARNING"},
        )
        log.close()
        self.admin = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.admin.get("/_emulator/state").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError(f"the emulator did not start; see {log.name}") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def reset(self) -> None:
        """Every volume attached again, every job and call forgotten (configuration kept)."""
        self.admin.post("/_emulator/reset").raise_for_status()

    def configure(self, **changes: Any) -> None:
        self.admin.patch("/_emulator/config", json=changes).raise_for_status()

    def faults(self, config: dict[str, Any] | None) -> None:
        if config is None:
            self.admin.delete("/_emulator/faults").raise_for_status()
        else:
            self.admin.put("/_emulator/faults", json=config).raise_for_status()

    def calls(self) -> dict[str, Any]:
        return dict(self.admin.get("/_emulator/calls").json())

    def close(self) -> None:
        self.admin.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._dir.cleanup()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- figures and results


@dataclass
class Figure:
    """One measured figure of one scenario: our samples, the SDK's (or the baseline's), and the
    target, checked on the medians.

    ``target`` is a ratio bound (``ratio <= target``) when there is a baseline, else an absolute
    bound on our median (``ours <= target``; ``higher_is_better`` flips both)."""

    scenario: str
    name: str
    unit: str
    ours: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = "SDK"
    target: float | None = None
    # The row of issue 17's target table this figure answers (empty: none); docs/performance.md
    # gives the floor and what meeting it would take for each one missed.
    headline: str = ""
    higher_is_better: bool = False
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.ours)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline_median
        return self.median / base if base else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.baseline else self.median
        if value is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            median=self.median,
            min=min(self.ours),
            baseline_median=self.baseline_median,
            baseline_min=min(self.baseline) if self.baseline else None,
            ratio=self.ratio,
            met=self.met,
        )
        return data


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The results as one markdown table."""
    lines = [
        "| scenario | figure | ours (median / min) | baseline (median / min) | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = (
            f"{_fmt(f.baseline_median)} / {_fmt(min(f.baseline))} ({f.baseline_name})" if f.baseline else "–"
        )
        if f.target is None:
            target = "–"
        else:
            sign = "≥" if f.higher_is_better else "≤"
            target = f"{sign} {f.target:g}×" if f.baseline else f"{sign} {_fmt(f.target)} {f.unit}"
        met = {True: "yes", False: "**no**", None: "–"}[f.met]
        lines.append(
            f"| {f.scenario} | {f.name} ({f.unit}) | {_fmt(f.median)} / {_fmt(min(f.ours))} | {base} "
            f"| {_fmt(f.ratio) + '×' if f.ratio is not None else '–'} | {target} | {met} |"
        )
    return "\n".join(lines)


def targets_table(figures: list[Figure]) -> str:
    """Issue 17's target table: one row per headline figure, measured in this run."""
    lines = [
        "| figure | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        if not f.headline:
            continue
        base = f"{_fmt(f.baseline_median)} {f.unit} ({f.baseline_name})" if f.baseline else "–"
        met = {True: "yes", False: "**no**", None: "–"}[f.met]
        ratio = f"{_fmt(f.ratio)}×"
        lines.append(
            f"| {f.headline} | {_fmt(f.median)} {f.unit} | {base} | {ratio} | ≤ {f.target:g}× | {met} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    import importlib.metadata  # noqa: PLC0415

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {n: version(n) for n in ("ecs-detach", "httpx", "pydantic")},
        "sdk": SDK_REQUIREMENT,
    }


def write_results(figures: list[Figure], extra: dict[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "targets": [
            {
                "headline": f.headline,
                "ours": f.median,
                "baseline": f.baseline_median,
                "unit": f.unit,
                "ratio": f.ratio,
                "target": f.target,
                "met": f.met,
            }
            for f in figures
            if f.headline
        ],
        "figures": [f.as_dict() for f in figures],
        "details": extra,
        "table": table(figures),
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")

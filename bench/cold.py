"""Scenario 1, cold start to first handled event: what a new function instance costs before the
first detach is done, in two settings:

* **read-only code, each side as shipped** (as FunctionGraph runs it: the code folder cannot be
  written, so no bytecode is ever cached): ours from its package unpacked with the unchecked-hash
  ``.pyc`` files it ships; the SDK from its ``pip install --target`` folder zipped as it is and
  unpacked the same way, so the timestamp-checked ``.pyc`` files pip compiled no longer match
  their sources and every module it imports is compiled again, on every cold start. Both run with
  ``PYTHONDONTWRITEBYTECODE=1`` in a folder made read-only (``bench.common.unpacked``).
* **both with valid bytecode**: ours the same; the SDK from the folder pip installed, whose
  ``.pyc`` files are valid. This is the best the SDK can do, a warm platform image.

Each run is a fresh ``python -S`` process (``bench.common.child``) that imports its side, builds
its client, detaches one attached volume on the emulator (loopback, its own process), checks the
answer and exits:

* ours imports the package's entry file ``index`` from the unpacked code package, as
  FunctionGraph loads ``index.handler``, and calls ``handler(event, None)`` with a
  direct-invocation detach request. It reads its
  configuration and credentials from the environment as on FunctionGraph, opens its idempotency
  store and jobs topic in a fresh temporary folder (a new instance has an empty ``/tmp``), and
  must answer ``202`` with an ``accepted`` record that carries a job id.
* the SDK (``huaweicloudsdkecs``, pinned in ``bench.common``) imports ``huaweicloudsdkecs.v2``,
  builds an ``EcsClient`` with the same credentials and endpoint, and calls
  ``detach_server_volume``; the response must carry a job id.

Both sides are timed the same way, by the parent from spawn to the moment the child has its answer
checked (a ``time.monotonic()`` reading the child reports: one clock for all processes on Linux;
the interpreter's exit is left out, as a function instance does not exit after its first event;
spawn to exit is in the details), and
report their own peak RSS (``VmHWM`` in ``/proc/self/status``). Ours does more in that time than
the SDK: the safety policy reads the server and the volume before the detach (the SDK makes the
one ``DELETE``), and the job is recorded and published; the per-event API call counts are in the
details. Each round rotates the order of its five children (both sides in both settings, and the
floor), every volume is detached once, and no run is
discarded. One extra run of ours (read-only) under ``python -X importtime`` lists the costliest imports and
each dependency's cost on the cold path (``_by_dependency``); one more, from the package built
with the webhook routes' extra, what those routes' libraries add when an API Gateway event first
needs them (``WEBHOOKS_CODE``).

One more child, the floor, runs from the same package folder and does only what the project's
stack cannot avoid: import pydantic and httpx, validate one two-field model, and make one plain
HTTP call on ``http.client`` (the engine under our cloud clients, cheaper than any call through
httpx). Its ratio to the SDK is the best any function written on that stack could reach here.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    DEMO_AK,
    DEMO_PROJECT,
    DEMO_SK,
    READ_ONLY_ENV,
    Emulator,
    Figure,
    child,
    child_command,
    clean_env,
    make_seed,
    ours_dir,
    package_zip,
    sdk_dir,
    sdk_shipped_dir,
    unpacked,
)

# The setting → (our folder, the SDK's folder, extra environment), filled in ``run``.
READ_ONLY, BYTECODE = "read-only", "bytecode"
# The children of one round: each side in each setting, and the floor.
RUNS = [(READ_ONLY, "ours"), (READ_ONLY, "sdk"), (BYTECODE, "ours"), (BYTECODE, "sdk"), (READ_ONLY, "floor")]
ROUNDS = 25  # the medians of 15 moved by up to 5 % between runs on this shared machine
QUICK_ROUNDS = 3
TOP_IMPORTS = 10

# What both children do last, after the check: the same JSON line, with the moment the event was
# handled and the process's peak RSS. The moment is ``time.monotonic()``, CLOCK_MONOTONIC, one
# clock for every process on Linux, so the parent can take "spawn to first handled event" from
# it without the interpreter's exit (the parent also times spawn to exit, in the details). The
# peak is VmHWM, the high-water mark of this process image, not ``ru_maxrss``: Linux carries the
# parent's peak over into ``ru_maxrss`` across fork and exec, so every child would report at least
# the size of this benchmark process.
_REPORT = """
import time as _time
_handled_at = _time.monotonic()
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
_out = {"job_id": job_id, "handled_at": _handled_at, "peak_rss_kib": peak_kib, "compiled": _compiled}
print(json.dumps(_out))
"""

# What every child does first: count the modules compiled from source on the way (no valid
# bytecode), imports that then failed included. One wrapper call per module loaded from source.
_COUNT_COMPILED = """
import importlib._bootstrap_external as _external
_compiled = []
_to_code = _external.SourceLoader.source_to_code
def _counted(self, data, path, *, _optimize=-1):
    _compiled.append(path)
    return _to_code(self, data, path, _optimize=_optimize)
_external.SourceLoader.source_to_code = _counted
"""

OURS_CODE = """
import json
from index import handler
result = handler({event!r}, None)
accepted = [r for r in result.get("records", []) if r.get("status") == "accepted" and r.get("job_id")]
if result.get("status_code") != 202 or len(accepted) != 1:
    raise SystemExit("the detach was not accepted: " + json.dumps(result))
job_id = accepted[0]["job_id"]
"""

SDK_CODE = """
import json
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkecs.v2 import DetachServerVolumeRequest, EcsClient
client = (
    EcsClient.new_builder()
    .with_credentials(BasicCredentials({ak!r}, {sk!r}, {project!r}))
    .with_endpoints([{url!r}])
    .build()
)
request = DetachServerVolumeRequest(server_id={server_id!r}, volume_id={volume_id!r})
response = client.detach_server_volume(request)
job_id = response.job_id
if not job_id:
    raise SystemExit("the detach returned no job id: " + str(response))
"""


# The floor's one HTTP call goes on ``http.client`` directly, the engine under our cloud clients'
# transport (``handler/cloud/_transport.py``), without httpx's client around it: cheaper than any
# call through httpx, so no function on this stack can do the call for less.
_FLOOR_CALL = """
import http.client
_connection = http.client.HTTPConnection({host!r})
_connection.request("GET", "/v1/floor")
_connection.getresponse().read()
job_id = "none"
"""

FLOOR_CODE = (
    """
import json
import httpx
from pydantic import BaseModel
class Request(BaseModel):
    server_id: str
    volume_id: str
Request(server_id="s", volume_id="v")
"""
    + _FLOOR_CALL
)


def _ours_env(url: str, scratch: Path) -> dict[str, str]:
    """A new FunctionGraph instance: credentials and endpoint set, store and topics in an empty folder."""
    return {
        "HUAWEICLOUD_SDK_AK": DEMO_AK,
        "HUAWEICLOUD_SDK_SK": DEMO_SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_PROJECT,
        "ECS_DETACH_ECS_ENDPOINT": url,
        "ECS_DETACH_STORE": f"sqlite:///{scratch}/store.db",
        "ECS_DETACH_JOBS_TOPIC": f"sqlite:///{scratch}/topics.db?topic=jobs",
        "ECS_DETACH_RESULTS_TOPIC": f"sqlite:///{scratch}/topics.db?topic=results",
        # The audit history (on by default) in the instance's folder too, not the working folder.
        "ECS_DETACH_HISTORY": f"sqlite:///{scratch}/history.db",
    }


def _ours_code(pair: tuple[str, str], key: str) -> str:
    event = {"server_id": pair[0], "volume_id": pair[1], "idempotency_key": key}
    return _COUNT_COMPILED + OURS_CODE.format(event=event) + _REPORT


def _sdk_code(url: str, pair: tuple[str, str]) -> str:
    server_id, volume_id = pair
    code = SDK_CODE.format(
        ak=DEMO_AK, sk=DEMO_SK, project=DEMO_PROJECT, url=url, server_id=server_id, volume_id=volume_id
    )
    return _COUNT_COMPILED + code + _REPORT


def _timed(path: Path, code: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """One cold run: wall time from spawn to the first handled event (ms, ``wall_ms``) and to the
    process's exit (``exit_ms``), and peak RSS (MiB, from the child)."""
    began = time.monotonic()
    out = child(path, code, env)
    exited = time.monotonic()
    return {
        "wall_ms": round((out["handled_at"] - began) * 1000, 2),
        "exit_ms": round((exited - began) * 1000, 2),
        "rss_mib": round(out["peak_rss_kib"] / 1024, 3),
        "compiled": len(out["compiled"]),  # modules compiled from source on the way
    }


def _ours_run(path: Path, url: str, pair: tuple[str, str], key: str, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        return _timed(path, _ours_code(pair, key), {**_ours_env(url, Path(scratch)), **env})


# What the webhook routes' libraries cost when an API Gateway event first needs them: the
# modules the router imports, after the handler itself.
WEBHOOKS_CODE = """
import index
import handler.entry.webhooks, handler.security.webhook_auth
import handler.sources.cloudevents_http, handler.sources.tickets
"""
WEBHOOK_LIBRARIES = ("cryptography", "cloudevents", "jmespath", "standardwebhooks")
# Top-level module → the distribution it belongs to, where the names differ.
DISTRIBUTIONS = {"dotenv": "python-dotenv", "_cffi_backend": "cffi", "typing_extensions": "typing-extensions"}


def _import_times(path: Path, code: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """``code`` run as ``child`` runs it, under ``python -X importtime``: each import with its
    nesting depth, own time and cumulative time (ms), in the order the interpreter reports them."""
    proc = subprocess.run(  # noqa: S603 (our own interpreter and code)
        child_command(path, code, flags=("-X", "importtime")),
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"importtime child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    imports: list[dict[str, Any]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        imports.append(
            {
                "module": name.strip(),
                "depth": (len(name) - len(name.lstrip()) - 1) // 2,
                "self_ms": int(own) / 1000,
                "cumulative_ms": int(cumulative) / 1000,
            }
        )
    # A module is reported after the modules it imported (deeper, just before it): an import is
    # the outermost of its top-level name when the next shallower import is of another name.
    for i, m in enumerate(imports):
        parent = next((p for p in imports[i + 1 :] if p["depth"] < m["depth"]), None)
        m["outermost"] = parent is None or parent["module"].split(".")[0] != m["module"].split(".")[0]
    return imports


def _by_dependency(imports: list[dict[str, Any]], package: Path) -> list[dict[str, Any]]:
    """Each top-level name's cost on the cold path: ``self_ms``, the sum of its own modules' own
    import time, and ``first_import_ms``, the cumulative time of its outermost imports (its own
    modules plus whatever they loaded first: the standard library modules it needs, other
    dependencies it pulled in first). Names from the package folder are the dependencies (and
    ``handler``); the standard library is one line."""
    shipped = {path.name.removesuffix(".py") for path in package.iterdir()}
    rows: dict[str, dict[str, Any]] = {}
    for m in imports:
        top = m["module"].split(".")[0]
        name = DISTRIBUTIONS.get(top, top) if top in shipped else "(standard library)"
        row = rows.setdefault(
            name, {"dependency": name, "self_ms": 0.0, "first_import_ms": 0.0, "modules": 0}
        )
        row["self_ms"] += m["self_ms"]
        row["modules"] += 1
        if m["outermost"]:
            row["first_import_ms"] += m["cumulative_ms"]
    for row in rows.values():
        row["self_ms"], row["first_import_ms"] = round(row["self_ms"], 1), round(row["first_import_ms"], 1)
    return sorted(rows.values(), key=lambda row: float(row["self_ms"]), reverse=True)


def _top(imports: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The ``TOP_IMPORTS`` costliest imports by ``key``."""
    return sorted(imports, key=lambda m: float(m[key]), reverse=True)[:TOP_IMPORTS]


def _calls_per_event(calls: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> float:
    """The API calls the emulator saw for these (server, volume) pairs, per pair."""
    ids = {i for pair in pairs for i in pair}
    mine = [c for c in calls if c.get("server_id") in ids or c.get("volume_id") in ids]
    return len(mine) / len(pairs)


def run(quick: bool) -> tuple[list[Figure], dict[str, Any]]:
    rounds = QUICK_ROUNDS if quick else ROUNDS
    ours_path = ours_dir()
    settings = {
        READ_ONLY: (ours_path, sdk_shipped_dir(), READ_ONLY_ENV),
        BYTECODE: (ours_path, sdk_dir(), {}),
    }
    webhooks_path = unpacked(package_zip(webhook_routes=True), "ours-webhooks")
    # One server with one data disk per run, so no run finds its server busy with another's job;
    # the last one is for the importtime run.
    runs = 2 * len(settings) * rounds
    seed, pairs = make_seed(runs + 1, 1)
    fresh = iter(pairs[:runs])
    samples: list[dict[str, Any]] = []
    samples_pairs: list[str] = []  # the side each pair went to, in order
    with Emulator(seed) as emulator:
        host = emulator.url.removeprefix("http://")
        for i in range(rounds):
            # Every round runs the five children in an order rotated by one, and reversed every
            # other round, so that each follows each other, and goes before or after the other
            # side, about equally often: a child started right after the SDK's read-only run
            # (about a second of compiling) starts slower, and a fixed order gave that handicap
            # to one side.
            order = RUNS[i % len(RUNS) :] + RUNS[: i % len(RUNS)]
            order = order if i % 2 == 0 else order[::-1]
            for setting, side in order:
                if side == "floor":
                    code = _COUNT_COMPILED + FLOOR_CODE.format(host=host) + _REPORT
                    floor = _timed(ours_path, code, READ_ONLY_ENV)
                    samples.append({"round": i, "setting": setting, "side": side, "first": False, **floor})
                    continue
                ours, sdk, env = settings[setting]
                pair = next(fresh)
                samples_pairs.append(side)
                if side == "ours":
                    measured = _ours_run(ours, emulator.url, pair, f"bench-cold-{setting}-{i}", env)
                else:
                    measured = _timed(sdk, _sdk_code(emulator.url, pair), env)
                other = "sdk" if side == "ours" else "ours"
                first = order.index((setting, side)) < order.index((setting, other))
                samples.append({"round": i, "setting": setting, "side": side, "first": first, **measured})
        calls = emulator.calls()["calls"]
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
            env = {**_ours_env(emulator.url, Path(scratch)), **READ_ONLY_ENV}
            imports = _import_times(ours_path, _ours_code(pairs[-1], "bench-cold-importtime"), env)
    webhooks = _import_times(webhooks_path, WEBHOOKS_CODE, READ_ONLY_ENV)

    def values(setting: str, side: str, key: str) -> list[float]:
        return [s[key] for s in samples if s["side"] == side and s["setting"] == setting]

    scenario = "1 cold start"
    figures = [
        Figure(
            scenario,
            "read-only code, each side as shipped: wall time to first handled event",
            "ms",
            values(READ_ONLY, "ours", "wall_ms"),
            values(READ_ONLY, "sdk", "wall_ms"),
            target=0.5,
            headline="cold start, read-only code, each side as shipped",
        ),
        Figure(
            scenario,
            "both with valid bytecode: wall time to first handled event",
            "ms",
            values(BYTECODE, "ours", "wall_ms"),
            values(BYTECODE, "sdk", "wall_ms"),
            target=0.9,
            headline="cold start, both sides with valid bytecode",
        ),
        Figure(
            scenario,
            "peak RSS at first handled event (valid bytecode)",
            "MiB",
            values(BYTECODE, "ours", "rss_mib"),
            values(BYTECODE, "sdk", "rss_mib"),
            target=0.85,
            headline="peak RSS at first handled event",
        ),
    ]
    # The floor, against the SDK at its best (valid bytecode): time and peak RSS, no target.
    measures = (("wall_ms", "ms", "read-only", "cost"), ("rss_mib", "MiB", "peak RSS", "hold"))
    for key, unit, what, can in measures:
        figures.append(
            Figure(
                scenario,
                f"the floor: pydantic + httpx, one model, one call: {what} (vs the SDK with valid bytecode)",
                unit,
                values(READ_ONLY, "floor", key),
                values(BYTECODE, "sdk", key),
                note=f"the least a function on the project's stack can {can}; no target",
            )
        )
    details: dict[str, Any] = {
        "rounds": rounds,
        "samples": samples,
        "api_calls_per_event": {
            side: _calls_per_event(
                calls, [p for s, p in zip(samples_pairs, pairs, strict=False) if s == side]
            )
            for side in ("ours", "sdk")
        },
        "modules_compiled_per_cold_start": {
            f"{setting}/{side}": statistics.median(
                s["compiled"] for s in samples if s["side"] == side and s["setting"] == setting
            )
            for setting in settings
            for side in ("ours", "sdk")
        },
        "ours_import_total_ms": round(sum(m["self_ms"] for m in imports), 1),
        "ours_imports_by_dependency": _by_dependency(imports, ours_path),
        "ours_imports_by_cumulative": _top(imports, "cumulative_ms"),
        "ours_imports_by_self": _top(imports, "self_ms"),
        "webhook_libraries_first_import_ms": {
            row["dependency"]: row["first_import_ms"]
            for row in _by_dependency(webhooks, webhooks_path)
            if row["dependency"] in WEBHOOK_LIBRARIES
        },
        "exit_ms_median": {  # spawn to the process's exit, interpreter shutdown included
            f"{setting}/{side}": statistics.median(
                s["exit_ms"] for s in samples if s["side"] == side and s["setting"] == setting
            )
            for setting in settings
            for side in ("ours", "sdk")
        },
        "wall_ms_when_first": {  # (a quick run may not have each side go first in each setting)
            f"{setting}/{side}": statistics.median(first)
            for setting in settings
            for side in ("ours", "sdk")
            if (
                first := [
                    s["wall_ms"]
                    for s in samples
                    if s["side"] == side and s["setting"] == setting and s["first"]
                ]
            )
        },
    }
    return figures, details

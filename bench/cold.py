"""Scenario 1, cold start to first handled event: what a new function instance costs before the
first detach is done.

Each run is a fresh ``python -S`` process (``bench.common.child``) that imports its side, builds
its client, detaches one attached volume on the emulator (loopback, its own process), checks the
answer and exits:

* ours imports the FunctionGraph entry ``handler.entry.functiongraph`` from the unpacked code
  package and calls ``handler(event, None)`` with a direct-invocation detach request. It reads its
  configuration and credentials from the environment as on FunctionGraph, opens its idempotency
  store and jobs topic in a fresh temporary folder (a new instance has an empty ``/tmp``), and
  must answer ``202`` with an ``accepted`` record that carries a job id.
* the SDK (``huaweicloudsdkecs``, pinned in ``bench.common``) imports ``huaweicloudsdkecs.v2``,
  builds an ``EcsClient`` with the same credentials and endpoint, and calls
  ``detach_server_volume``; the response must carry a job id.

Both sides are timed the same way, by the parent around the whole child (spawn to exit), and
report their own peak RSS (``VmHWM`` in ``/proc/self/status``). Ours does more in that time than
the SDK: the safety policy reads the server and the volume before the detach (the SDK makes the
one ``DELETE``), and the job is recorded and published; the per-event API call counts are in the
details. Rounds alternate which side goes first, every volume is detached once, and no run is
discarded. One extra run of ours under ``python -X importtime`` lists the costliest imports.

A third child, the floor, runs from the same package folder and does only what the issue's
stack cannot avoid: import pydantic and httpx, validate one two-field model, and make one plain
HTTP call on a client without a CA bundle (as ours does for plain HTTP). Its ratio to the SDK
is the best any function written on pydantic + httpx could reach here.
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
    Emulator,
    Figure,
    child,
    child_command,
    clean_env,
    make_seed,
    ours_dir,
    sdk_dir,
)

ROUNDS = 15
QUICK_ROUNDS = 3
TOP_IMPORTS = 10

# What both children do last, after the check: the same JSON line, with the process's peak RSS.
# That is VmHWM, the high-water mark of this process image, not ``ru_maxrss``: Linux carries the
# parent's peak over into ``ru_maxrss`` across fork and exec, so every child would report at least
# the size of this benchmark process.
_REPORT = """
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"job_id": job_id, "peak_rss_kib": peak_kib}))
"""

OURS_CODE = """
import json
from handler.entry.functiongraph import handler
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


FLOOR_CODE = """
import json
import httpx
from pydantic import BaseModel
class Request(BaseModel):
    server_id: str
    volume_id: str
Request(server_id="s", volume_id="v")
with httpx.Client(transport=httpx.HTTPTransport(verify=False)) as client:
    client.get({url!r} + "/v1/floor")
job_id = "none"
"""


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
    }


def _ours_code(pair: tuple[str, str], key: str) -> str:
    event = {"server_id": pair[0], "volume_id": pair[1], "idempotency_key": key}
    return OURS_CODE.format(event=event) + _REPORT


def _sdk_code(url: str, pair: tuple[str, str]) -> str:
    server_id, volume_id = pair
    code = SDK_CODE.format(
        ak=DEMO_AK, sk=DEMO_SK, project=DEMO_PROJECT, url=url, server_id=server_id, volume_id=volume_id
    )
    return code + _REPORT


def _timed(path: Path, code: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """One cold run: wall time (ms, spawn to exit, measured here) and peak RSS (MiB, from the child)."""
    began = time.perf_counter()
    out = child(path, code, env)
    wall_ms = (time.perf_counter() - began) * 1000
    return {"wall_ms": round(wall_ms, 2), "rss_mib": round(out["peak_rss_kib"] / 1024, 3)}


def _ours_run(path: Path, url: str, pair: tuple[str, str], key: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        return _timed(path, _ours_code(pair, key), _ours_env(url, Path(scratch)))


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
    return imports


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
    ours_path, sdk_path = ours_dir(), sdk_dir()
    # One server with one data disk per run, so no run finds its server busy with another's job;
    # the last one is for the importtime run.
    seed, pairs = make_seed(2 * rounds + 1, 1)
    ours_pairs, sdk_pairs = pairs[0 : 2 * rounds : 2], pairs[1 : 2 * rounds : 2]
    samples: list[dict[str, Any]] = []
    with Emulator(seed) as emulator:
        for i in range(rounds):
            sides = ("ours", "sdk") if i % 2 == 0 else ("sdk", "ours")
            for side in sides:
                if side == "ours":
                    measured = _ours_run(ours_path, emulator.url, ours_pairs[i], f"bench-cold-{i}")
                else:
                    measured = _timed(sdk_path, _sdk_code(emulator.url, sdk_pairs[i]))
                samples.append({"round": i, "side": side, "first": side == sides[0], **measured})
            floor = _timed(ours_path, FLOOR_CODE.format(url=emulator.url) + _REPORT)
            samples.append({"round": i, "side": "floor", "first": False, **floor})
        calls = emulator.calls()["calls"]
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
            imports = _import_times(
                ours_path,
                _ours_code(pairs[-1], "bench-cold-importtime"),
                _ours_env(emulator.url, Path(scratch)),
            )

    def values(side: str, key: str) -> list[float]:
        return [s[key] for s in samples if s["side"] == side]

    figures = [
        Figure(
            "1 cold start",
            "wall time to first handled event",
            "ms",
            values("ours", "wall_ms"),
            values("sdk", "wall_ms"),
            target=0.75,
        ),
        Figure(
            "1 cold start",
            "peak RSS",
            "MiB",
            values("ours", "rss_mib"),
            values("sdk", "rss_mib"),
            target=0.85,
        ),
        Figure(
            "1 cold start",
            "the floor: pydantic + httpx alone, one call",
            "ms",
            values("floor", "wall_ms"),
            values("sdk", "wall_ms"),
            note="the least a function on this stack can cost; no target",
        ),
        Figure(
            "1 cold start",
            "the floor: peak RSS",
            "MiB",
            values("floor", "rss_mib"),
            values("sdk", "rss_mib"),
            note="the least a function on this stack can hold; no target",
        ),
    ]
    details: dict[str, Any] = {
        "rounds": rounds,
        "samples": samples,
        "api_calls_per_event": {
            "ours": _calls_per_event(calls, ours_pairs),
            "sdk": _calls_per_event(calls, sdk_pairs),
        },
        "ours_import_total_ms": round(sum(m["self_ms"] for m in imports), 1),
        "ours_imports_by_cumulative": _top(imports, "cumulative_ms"),
        "ours_imports_by_self": _top(imports, "self_ms"),
        "wall_ms_when_first": {
            side: statistics.median(s["wall_ms"] for s in samples if s["side"] == side and s["first"])
            for side in ("ours", "sdk")
        },
    }
    return figures, details

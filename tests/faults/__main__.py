"""The full fault suite (``make faults``): the issue-14 harness's figures, per backend.

    python -m tests.faults [--runs 1] [--requests 200] [--rate 20] [--job-s 5] [--backends sqlite,redis]

Prints one Markdown table row per run (docs/resilience.md keeps the last figures) and exits 1
if any invariant was broken (tests/faults/harness.py says which).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.faults.harness import BACKENDS, Run, Scenario, run
from tests.faults.instances import available

HEADER = (
    "| backend (store) | sent (quiet) | answered 202 | results | missing | twice | DELETEs | left | s |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def row(report: Run) -> str:
    scenario = report.scenario
    twice = sum(1 for n in report.results.values() if n > 1)
    left = sum(report.left.values())
    return (
        f"| {report.label} | {len(report.sent)} ({scenario.quiet}) | {len(report.accepted)} "
        f"| {sum(report.results.values())} | {len(report.missing())} | {twice} "
        f"| {sum(report.deletes.values())} | {left} | {report.seconds:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200, help="disks, one request each")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--job-s", type=float, default=5.0, help="seconds each detach job runs")
    parser.add_argument(
        "--quiet", type=int, default=20, help="requests sent while the broker is down, not retried"
    )
    parser.add_argument("--backends", default=",".join([*BACKENDS, "redis+store"]))
    args = parser.parse_args(argv)
    scenarios = []
    for name in args.backends.split(","):
        backend = name.removesuffix("+store")
        if backend != "sqlite" and not available(backend):
            print(f"skipping {backend}: no server installed", file=sys.stderr)
            continue
        scenarios.append(
            Scenario(
                backend,
                redis_store=name.endswith("+store"),
                requests=args.requests,
                rate=args.rate,
                job_s=args.job_s,
                quiet=args.quiet,
                broker_down_s=15.0 if backend == "nats" else 5.0,  # as in issue 14
                timeout_s=180.0,
            )
        )
    print(HEADER)
    failed = False
    with tempfile.TemporaryDirectory(prefix="ecs-detach-faults-") as workdir:
        for index in range(args.runs):
            for scenario in scenarios:
                report = run(scenario, Path(workdir) / f"{scenario.backend}-{index}")
                print(row(report), flush=True)
                for problem in report.problems():
                    failed = True
                    print(f"  {report.label}: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

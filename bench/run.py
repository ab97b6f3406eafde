"""``make bench``: every scenario, ours interleaved with its SDK (or baseline) counterpart, one
table printed and written to ``bench/results/latest.json``. docs/performance.md explains them.

    python -m bench.run                 # all scenarios
    python -m bench.run --only cold cpu # some of them (names below)
    python -m bench.run --quick         # fewer repetitions, for a smoke run

Each scenario module has ``run(quick) -> (figures, details)``. A full run (not ``--only``, not
``--quick``) also puts the table into README.md and docs/performance.md, between the
``<!-- bench:table -->`` markers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, Figure, machine, table, targets_table, write_results

SCENARIOS = {
    "cold": "bench.cold",  # 1. cold start to first handled event
    "cpu": "bench.cpu",  # 2. CPU per detach event
    "burst": "bench.burst",  # 3. throughput under a burst
    "polling": "bench.polling",  # 4. polling cost and promptness, 5. billed time per job
    "size": "bench.size",  # 6. package size
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    started = time.monotonic()
    for name in args.only:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        began = time.monotonic()
        module = importlib.import_module(SCENARIOS[name])
        found, detail = module.run(args.quick)
        figures += found
        details[name] = {**detail, "seconds": round(time.monotonic() - began, 1)}
        print(table(found), file=sys.stderr, flush=True)
    details["total_seconds"] = round(time.monotonic() - started, 1)
    details["quick"] = args.quick
    write_results(figures, details)
    print(table(figures))
    print(f"\n{targets_table(figures)}")
    where = RESULTS.relative_to(RESULTS.parents[2])
    print(f"\n{len(figures)} figures in {details['total_seconds']:.0f} s; written to {where}")
    if not args.quick and args.only == list(SCENARIOS):
        where = machine()
        seconds = details["total_seconds"]
        caption = f"Python {where['python']}, {where['cpus']} CPUs ({where['cpu']}), {seconds:.0f} s:"
        for document in (ROOT / "README.md", ROOT / "docs" / "performance.md"):
            _between_markers(document, f"{caption}\n\n{table(figures)}")
        _between_markers(ROOT / "docs" / "performance.md", f"{caption}\n\n{targets_table(figures)}", TARGETS)
    missed = [f"{f.scenario}: {f.name}" for f in figures if f.met is False]
    for line in missed:
        print(f"target missed: {line}")
    return 0


MARKER = "<!-- bench:table -->"
TARGETS = "<!-- bench:targets -->"  # issue 17's target table, in docs/performance.md


def _between_markers(path: Path, text: str, marker: str = MARKER) -> None:
    """Replace what lies between the two ``marker`` lines in ``path`` with ``text``."""
    before, first, rest = path.read_text().partition(marker)
    _, second, after = rest.partition(marker)
    if not (first and second):
        raise SystemExit(f"{path}: expected two {marker} lines around the benchmark table")
    path.write_text(f"{before}{marker}\n{text}\n{marker}{after}")


if __name__ == "__main__":
    sys.exit(main())

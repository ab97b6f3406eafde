"""Scenario 6, package size: what has to be uploaded to FunctionGraph and unpacked on every cold
start, ours against what the official SDK brings along.

Ours is the FunctionGraph code package (``ecs-detach package`` for the running Python, built by
``bench.common.package_zip``) as shipped: default extras, with the unchecked-hash bytecode it
carries; the zip as uploaded, and the sum of its files' sizes once unpacked, for the default build
and for the build with the webhook routes' extra (``--webhook-routes``: cryptography and co.).
FunctionGraph takes a function's zip of up to 40 MB in its console, 50 MB through its API.

The SDK side is the folder ``pip install --target`` made for ``huaweicloudsdkecs`` (the SDK with
all its dependencies, and the bytecode pip compiles by default), zipped as it is with deflate at
level 9, as the package builder zips (``bench.common.sdk_zip``): what one would ship. A function
built on the SDK would add its own code (and the EVS SDK, for our calls) on top, so the SDK's
figures are a lower bound for it. One more figure compares the sources alone: both sides without
their bytecode.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import Figure, package_zip, sdk_dir, sdk_files, sdk_zip, zip_files

MIB = 1024 * 1024
# The 10 MiB bound on our zips is the project's own budget (a quarter of the 40 MB FunctionGraph
# takes in its console), kept so an upload stays quick; it is not a platform limit.
OWN_BUDGET = "the project's own budget, not a platform limit (FunctionGraph: 40 MB in its console)"


def by_top_level(sizes: list[tuple[str, int]]) -> dict[str, int]:
    """Bytes per top-level entry (package, module or ``.dist-info`` folder), largest first."""
    totals: Counter[str] = Counter()
    for name, size in sizes:
        totals[name.split("/", 1)[0]] += size
    return dict(totals.most_common())


def _sources_zipped(archive: Path, target: Path) -> int:
    """``archive`` without its bytecode, zipped the same way; its size in bytes."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            if "__pycache__" not in info.filename:
                out.writestr(info, source.read(info), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return target.stat().st_size


def run(quick: bool) -> tuple[list[Figure], dict[str, Any]]:
    del quick  # sizes are exact: nothing to repeat
    archive = package_zip()
    webhooks = package_zip(webhook_routes=True)
    with zipfile.ZipFile(archive) as zipped:
        ours_sizes = [(info.filename, info.file_size) for info in zipped.infolist() if not info.is_dir()]
    ours_zip = archive.stat().st_size
    ours_unzipped = sum(size for _, size in ours_sizes)

    root = sdk_dir()
    files = sdk_files(root)
    sdk_sizes = [(path.relative_to(root).as_posix(), path.stat().st_size) for path in files]
    sdk_installed = sum(size for _, size in sdk_sizes)
    shipped = sdk_zip().stat().st_size
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        sdk_sources = zip_files(root, sdk_files(root, bytecode=False), Path(tmp) / "sdk.zip")
        ours_sources = _sources_zipped(archive, Path(tmp) / "ours.zip")

    scenario = "6 package"
    figures = [
        Figure(
            scenario,
            "FunctionGraph zip (default extras) vs the SDK zipped the same way",
            "MiB",
            [ours_zip / MIB],
            [shipped / MIB],
            target=1.0,
            headline="FunctionGraph zip (default extras)",
        ),
        Figure(
            scenario, "FunctionGraph package, zipped", "MiB", [ours_zip / MIB], target=10.0, note=OWN_BUDGET
        ),
        Figure(
            scenario,
            "with the webhooks extra (--webhook-routes), zipped",
            "MiB",
            [webhooks.stat().st_size / MIB],
            target=10.0,
            note=OWN_BUDGET,
        ),
        Figure(
            scenario,
            "sources only (no bytecode on either side), zipped",
            "MiB",
            [ours_sources / MIB],
            [sdk_sources / MIB],
            note="no target",
        ),
        Figure(
            scenario, "unzipped, vs the SDK installed", "MiB", [ours_unzipped / MIB], [sdk_installed / MIB]
        ),
    ]
    details: dict[str, Any] = {
        "ours": {
            "package": archive.name,
            "zipped_bytes": ours_zip,
            "unzipped_bytes": ours_unzipped,
            "sources_zipped_bytes": ours_sources,
            "files": len(ours_sizes),
            "top_level_bytes": by_top_level(ours_sizes),
            "webhooks_zipped_bytes": webhooks.stat().st_size,
        },
        "sdk": {
            "zipped_bytes": shipped,
            "sources_zipped_bytes": sdk_sources,
            "installed_bytes": sdk_installed,
            "files": len(sdk_sizes),
            "top_level_bytes": by_top_level(sdk_sizes),
        },
    }
    return figures, details

"""Scenario 6, package size: what has to be uploaded to FunctionGraph and unpacked on every cold
start, ours against what the official SDK brings along.

Ours is the FunctionGraph code package (``ecs-detach package`` for the running Python, built by
``bench.common.package_zip``): the zip as uploaded, and the sum of its files' sizes once unpacked.
It holds everything the functions need (handler and every dependency, no bytecode). FunctionGraph
caps a directly uploaded package at 10 MiB zipped, hence the absolute target.

The SDK side is the folder ``pip install --target`` made for ``huaweicloudsdkecs`` (the SDK with
all its dependencies, as one would ship it in a code package), counted the same way: its files'
sizes without the ``.requirement`` stamp this benchmark writes and without ``__pycache__`` (the
package carries no bytecode either), and those same files zipped with deflate at level 9, as the
package builder zips. A function built on the SDK would add its own code on top, so the SDK's
figures are a lower bound for it.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import Figure, package_zip, sdk_dir

MIB = 1024 * 1024
STAMP = ".requirement"  # written by bench.common.sdk_dir, not part of the SDK


def sdk_files(root: Path) -> list[Path]:
    """The SDK's installed files: everything under ``root`` but the stamp and bytecode."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.relative_to(root).as_posix() != STAMP
    )


def zip_files(root: Path, files: list[Path], target: Path) -> int:
    """``files`` (under ``root``) zipped to ``target`` with deflate level 9; its size in bytes."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
    return target.stat().st_size


def by_top_level(sizes: list[tuple[str, int]]) -> dict[str, int]:
    """Bytes per top-level entry (package, module or ``.dist-info`` folder), largest first."""
    totals: Counter[str] = Counter()
    for name, size in sizes:
        totals[name.split("/", 1)[0]] += size
    return dict(totals.most_common())


def run(quick: bool) -> tuple[list[Figure], dict[str, Any]]:
    del quick  # sizes are exact: nothing to repeat
    archive = package_zip()
    with zipfile.ZipFile(archive) as zipped:
        ours_sizes = [(info.filename, info.file_size) for info in zipped.infolist() if not info.is_dir()]
    ours_zip = archive.stat().st_size
    ours_unzipped = sum(size for _, size in ours_sizes)

    root = sdk_dir()
    files = sdk_files(root)
    sdk_sizes = [(path.relative_to(root).as_posix(), path.stat().st_size) for path in files]
    sdk_installed = sum(size for _, size in sdk_sizes)
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        sdk_zip = zip_files(root, files, Path(tmp) / "sdk.zip")

    scenario = "6 package"
    figures = [
        Figure(scenario, "FunctionGraph package, zipped", "MiB", [ours_zip / MIB], target=10.0),
        Figure(scenario, "zipped, vs the SDK zipped the same way", "MiB", [ours_zip / MIB], [sdk_zip / MIB]),
        Figure(
            scenario, "unzipped, vs the SDK installed", "MiB", [ours_unzipped / MIB], [sdk_installed / MIB]
        ),
    ]
    details: dict[str, Any] = {
        "ours": {
            "package": archive.name,
            "zipped_bytes": ours_zip,
            "unzipped_bytes": ours_unzipped,
            "files": len(ours_sizes),
            "top_level_bytes": by_top_level(ours_sizes),
        },
        "sdk": {
            "zipped_bytes": sdk_zip,
            "installed_bytes": sdk_installed,
            "files": len(sdk_sizes),
            "top_level_bytes": by_top_level(sdk_sizes),
        },
    }
    return figures, details

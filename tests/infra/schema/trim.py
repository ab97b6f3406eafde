"""Trim ``terraform providers schema -json`` of the huaweicloud provider to the resource and data
source types infra/terraform uses, for tests/infra/test_provider_schema.py.

Regenerate after changing the module or the provider version (needs the registry once):

    make provider-schema    # terraform init + providers schema -json, then this script

or by hand, from the schema of the version infra/terraform/versions.tf pins:

    python -m tests.infra.schema.trim full-schema.json.gz    # writes huaweicloud-<version>.json.gz here

``--types`` adds types the module does not use yet (comma separated). The output is
deterministic (sorted keys, gzip without a timestamp), so an unchanged schema gives no diff.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

HERE = Path(__file__).resolve().parent
TERRAFORM = HERE.parents[2] / "infra" / "terraform"
PROVIDER = "registry.terraform.io/huaweicloud/huaweicloud"
OPTIONS = SerializationOptions(strip_string_quotes=True, with_comments=False)


def pinned_version() -> str:
    """The exact provider version infra/terraform/versions.tf pins (``version = "= X.Y.Z"``)."""
    match = re.search(
        r'version\s*=\s*"=\s*([0-9]+\.[0-9]+\.[0-9]+)"', (TERRAFORM / "versions.tf").read_text()
    )
    if match is None:
        raise SystemExit("infra/terraform/versions.tf pins no exact provider version (= X.Y.Z)")
    return match.group(1)


def module_types() -> tuple[set[str], set[str]]:
    """The ``huaweicloud_*`` resource and data source types of infra/terraform/*.tf."""
    resources: set[str] = set()
    data: set[str] = set()
    for path in sorted(TERRAFORM.glob("*.tf")):
        document = hcl2.loads(path.read_text(), serialization_options=OPTIONS)
        for block in document.get("resource", []):
            resources.update(kind for kind in block if kind.startswith("huaweicloud_"))
        for block in document.get("data", []):
            data.update(kind for kind in block if kind.startswith("huaweicloud_"))
    return resources, data


def trim(full: dict[str, Any], resources: set[str], data: set[str]) -> dict[str, Any]:
    schemas = full["provider_schemas"][PROVIDER]
    missing = sorted(
        [t for t in resources if t not in schemas["resource_schemas"]]
        + [t for t in data if t not in schemas["data_source_schemas"]]
    )
    if missing:
        raise SystemExit(f"not in this provider's schema: {', '.join(missing)}")
    return {
        "format_version": full["format_version"],
        "provider_schemas": {
            PROVIDER: {
                "resource_schemas": {t: schemas["resource_schemas"][t] for t in sorted(resources)},
                "data_source_schemas": {t: schemas["data_source_schemas"][t] for t in sorted(data)},
            }
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("schema", type=Path, help="gzipped `terraform providers schema -json`")
    parser.add_argument("--types", default="", help="extra resource types to keep, comma separated")
    args = parser.parse_args()
    version = pinned_version()
    with gzip.open(args.schema, "rt") as file:
        full = json.load(file)
    resources, data = module_types()
    resources |= {t for t in args.types.split(",") if t}
    text = json.dumps(trim(full, resources, data), sort_keys=True, indent=1) + "\n"
    out = HERE / f"huaweicloud-{version}.json.gz"
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as zipped:
        zipped.write(text.encode())
    print(f"{out}: {len(resources)} resource and {len(data)} data source types")


if __name__ == "__main__":
    main()

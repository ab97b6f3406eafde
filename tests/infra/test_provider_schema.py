"""infra/terraform against the huaweicloud provider's own schema, offline.

tests/infra/schema/huaweicloud-<version>.json.gz is ``terraform providers schema -json`` of the
provider version versions.tf pins, trimmed to the types the module uses (tests/infra/schema/trim.py
regenerates it). Every ``huaweicloud_*`` resource and data source block is checked: the type
exists, every argument and nested block exists, required arguments are set, computed-only
attributes are not, deprecated ones fail unless DEPRECATED_ALLOWED names them with a reason.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.infra.conftest import INFRA, ROOT
from tests.infra.schema.trim import pinned_version

TERRAFORM = INFRA / "terraform"
SCHEMA_DIR = ROOT / "tests" / "infra" / "schema"
PROVIDER = "registry.terraform.io/huaweicloud/huaweicloud"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=True, with_comments=False)
# Terraform's own arguments of every resource and data block.
META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "lifecycle", "provider"})
# (type, attribute path) → why a deprecated argument is still used. Empty: none is.
DEPRECATED_ALLOWED: dict[tuple[str, str], str] = {}


def _schemas() -> dict[str, Any]:
    path = SCHEMA_DIR / f"huaweicloud-{pinned_version()}.json.gz"
    assert path.exists(), f"{path.name} is missing: regenerate it (tests/infra/schema/trim.py)"
    with gzip.open(path, "rt") as file:
        schemas: dict[str, Any] = json.load(file)["provider_schemas"][PROVIDER]
    return schemas


@dataclass(frozen=True)
class Block:
    kind: str  # "resource" or "data"
    type: str
    name: str
    body: dict[str, Any]

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        return f"{prefix}{self.type}.{self.name}"


def _blocks() -> Iterator[Block]:
    for path in sorted(TERRAFORM.glob("*.tf")):
        document = hcl2.loads(path.read_text(), serialization_options=OPTIONS)
        for kind in ("resource", "data"):
            for block in document.get(kind, []):
                for type_, named in block.items():
                    if type_.startswith("huaweicloud_"):
                        for name, body in named.items():
                            yield Block(kind, type_, name, body)


BLOCKS = list(_blocks())


def problems(type_: str, schema_block: dict[str, Any], body: dict[str, Any], path: str) -> list[str]:
    """What in ``body`` the provider would refuse or warn about, each with its path."""
    attributes: dict[str, Any] = schema_block.get("attributes", {})
    nested: dict[str, Any] = schema_block.get("block_types", {})
    found = []
    given = {key for key in body if not key.startswith("__") and key not in META_ARGUMENTS}
    for key in sorted(given):
        where = f"{path}{key}"
        is_block = isinstance(body[key], list) and all(
            isinstance(item, dict) and item.get("__is_block__") for item in body[key]
        )
        if key in attributes:
            spec = attributes[key]
            if is_block:
                found.append(f"{where}: is an argument, written as a block")
            if spec.get("computed") and not (spec.get("optional") or spec.get("required")):
                found.append(f"{where}: computed only, cannot be set")
            if spec.get("deprecated") and (type_, where) not in DEPRECATED_ALLOWED:
                found.append(f"{where}: deprecated ({spec.get('description', '')})")
        elif key in nested:
            spec = nested[key]
            if spec.get("deprecated") and (type_, where) not in DEPRECATED_ALLOWED:
                found.append(f"{where}: deprecated block")
            if not is_block:
                found.append(f"{where}: is a block, written as an argument")
                continue
            bodies = body[key]
            if "max_items" in spec and len(bodies) > spec["max_items"]:
                found.append(f"{where}: at most {spec['max_items']} block(s)")
            for item in bodies:
                found += problems(type_, spec["block"], item, f"{where}.")
        else:
            found.append(f"{where}: no such argument or block")
    for key, spec in sorted(attributes.items()):
        if spec.get("required") and key not in given:
            found.append(f"{path}{key}: required, not set")
    for key, spec in sorted(nested.items()):
        if spec.get("min_items", 0) > 0 and key not in given:
            found.append(f"{path}{key}: required block, not set")
    return found


def test_the_module_uses_provider_types() -> None:
    assert {block.type for block in BLOCKS if block.kind == "resource"}
    assert all(block.type.startswith("huaweicloud_") for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.address)
def test_block_matches_the_provider_schema(block: Block) -> None:
    schemas = _schemas()
    table = schemas["resource_schemas" if block.kind == "resource" else "data_source_schemas"]
    assert block.type in table, (
        f"{block.address}: {block.type} is not a {block.kind} type of the provider "
        "(or the trimmed schema is stale: regenerate it with tests/infra/schema/trim.py)"
    )
    assert problems(block.type, table[block.type]["block"], block.body, "") == []


def test_the_checker_finds_what_the_provider_refuses() -> None:
    schema = _schemas()["resource_schemas"]["huaweicloud_fgs_function"]["block"]
    body = {
        "name": "f",
        "runtime": "Python3.12",
        "timeout": 3,
        "urn": "x",
        "xrole": "agency",
        "no_such": 1,
        "func_mounts": [{"mount_type": "sfs", "__is_block__": True}],
        "tags": [{"a": "b", "__is_block__": True}],
    }
    found = problems("huaweicloud_fgs_function", schema, body, "")
    assert "urn: computed only, cannot be set" in found
    assert any(line.startswith("xrole: deprecated") for line in found)
    assert "no_such: no such argument or block" in found
    assert "memory_size: required, not set" in found
    assert any(line.startswith("func_mounts.") and "required" in line for line in found)
    assert "tags: is an argument, written as a block" in found


EVENT_DATA = json.loads((SCHEMA_DIR / "functiongraph-trigger-event-data.json").read_text())["types"]
# `name = value` in an HCL object literal (not ==, !=, <=, >=).
_OBJECT_KEY = re.compile(r"(?<![=!<>])\b([a-z_]+)\s*=(?!=)")


def _locals() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        for block in hcl2.loads(path.read_text(), serialization_options=OPTIONS).get("locals", []):
            found.update({key: value for key, value in block.items() if not key.startswith("__")})
    return found


def event_data_fields(expression: str) -> set[str]:
    """The field names of a trigger's ``event_data = jsonencode(…)``, through one local."""
    reference = re.fullmatch(r"\$\{jsonencode\(local\.(\w+)\)\}", expression)
    if reference:
        expression = str(_locals()[reference.group(1)])
    assert expression.startswith("${"), expression
    # The keys of object literals; `for key, value in …` names no field.
    return set(_OBJECT_KEY.findall(expression)) - {"key", "value"}


TRIGGERS = [block for block in BLOCKS if block.type == "huaweicloud_fgs_function_trigger"]


@pytest.mark.parametrize("block", TRIGGERS, ids=lambda block: block.address)
def test_trigger_event_data_has_the_api_fields(block: Block) -> None:
    spec = EVENT_DATA[block.body["type"]]
    fields = event_data_fields(block.body["event_data"])
    unknown = fields - set(spec["required"]) - set(spec["optional"])
    missing = set(spec["required"]) - fields
    assert (sorted(unknown), sorted(missing)) == ([], []), f"{block.address}: unknown, missing fields"


def test_event_data_fields_are_read_from_the_expression() -> None:
    expression = (
        '${jsonencode(merge({a_b = 1, c = x == "" ? 1 : 2}, '
        '{for key, value in {d = 1} : key => value if y != ""}))}'
    )
    assert event_data_fields(expression) == {"a_b", "c", "d"}


def _dms_locals_block() -> str:
    text = (TERRAFORM / "dms.tf").read_text()
    match = re.search(r"^locals \{\n.*?^\}\n", text, re.DOTALL | re.MULTILINE)
    assert match, "dms.tf has a locals block"
    return match.group(0)


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
@pytest.mark.parametrize(
    ("local", "type_", "variables"),
    [
        ("kafka_event_data", "KAFKA", {"kafka_trigger": '{instance_id="i", topic_ids=["t"]}'}),
        (
            "kafka_event_data",
            "KAFKA",
            {"kafka_trigger": '{instance_id="i", topic_ids=["t"], user_name="u"}', "kafka_password": "p"},
        ),
        (
            "rabbitmq_event_data",
            "RABBITMQ",
            {
                "rabbitmq_trigger": '{instance_id="i", exchange_name="e", user_name="u"}',
                "rabbitmq_password": "p",
            },
        ),
    ],
)
def test_terraform_renders_trigger_event_data_with_the_api_fields(
    local: str, type_: str, variables: dict[str, str], tmp_path: Any
) -> None:
    """The JSON Terraform itself renders (terraform console on variables.tf and dms.tf's locals;
    no provider needed) has every required field and no unknown one."""
    shutil.copy(TERRAFORM / "variables.tf", tmp_path / "variables.tf")
    (tmp_path / "locals.tf").write_text(_dms_locals_block())
    arguments = [f"-var={name}={value}" for name, value in {"region": "ap-southeast-1", **variables}.items()]
    arguments += ["-var=package_path=p.zip", "-var=delay_topic_url=redis://h:6379"]
    result = subprocess.run(
        ["terraform", "console", "-no-color", *arguments],
        input=f"nonsensitive(jsonencode(local.{local}))\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads(json.loads(result.stdout.strip()))
    spec = EVENT_DATA[type_]
    assert set(spec["required"]) <= set(rendered)
    assert set(rendered) <= set(spec["required"]) | set(spec["optional"])
    assert isinstance(rendered["batch_size"], int)
    if type_ == "KAFKA":  # credentials only for a SASL user
        assert ("kafka_password" in rendered) == ("user_name" in variables["kafka_trigger"])

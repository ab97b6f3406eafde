"""infra/terraform planned by Terraform itself, offline, with a provider-free stand-in.

`terraform plan` needs the huaweicloud provider, which only the registry gives. The stand-in is
the module with every ``huaweicloud_*`` resource and data block rewritten as a ``terraform_data``
resource of Terraform's built-in provider: the same count, for_each, depends_on and lifecycle
(preconditions), its arguments and blocks as ``input``; references become references to it
(any attribute: its id). Locals, outputs, checks and moved blocks are Terraform's own. So
Terraform evaluates what the parsing tests of test_terraform.py only read: the instance keys of
every for_each, each precondition of each instance, and the moved blocks against a state at
the old addresses. What the provider would do with the arguments is test_provider_schema.py's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.infra.test_terraform import OLD_ADDRESSES, TERRAFORM

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")

BLOCK = re.compile(r'^(resource|data) "huaweicloud_(\w+)" "(\w+)" \{\n(.*?)^\}\n', re.MULTILINE | re.DOTALL)
REFERENCE = re.compile(r"\b(data\.)?huaweicloud_(\w+)\.(\w+)((?:\[[^\]]*\])?)((?:\.\w+|\[\d+\])*)")
META_ARGUMENTS = ("count", "for_each", "depends_on", "lifecycle")


def _standin_name(data: str | None, type_: str, name: str) -> str:
    return f"{'data__' if data else ''}{type_}__{name}"


def standin_address(address: str) -> str:
    """huaweicloud_fgs_function.functions["detach"] → terraform_data.fgs_function__functions["detach"]."""
    match = re.fullmatch(r"huaweicloud_(\w+)\.(\w+)(\[.+\])?", address)
    assert match, address
    return f"terraform_data.{_standin_name(None, match.group(1), match.group(2))}{match.group(3) or ''}"


def _reference(match: re.Match[str]) -> str:
    data, type_, name, index, attributes = match.groups()
    return f"terraform_data.{_standin_name(data, type_, name)}{index}" + (".id" if attributes else "")


def _statements(body: str) -> list[str]:
    """The top-level arguments and blocks of a block body, each with its lines."""
    statements, current, depth = [], "", 0
    for line in body.splitlines(keepends=True):
        current += line
        code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
        depth += sum(code.count(c) for c in "{[(") - sum(code.count(c) for c in "}])")
        if depth == 0:
            if current.strip():
                statements.append(current)
            current = ""
    assert depth == 0, body
    return statements


def _block(match: re.Match[str]) -> str:
    kind, type_, name, body = match.groups()
    meta, arguments = [], []
    for statement in _statements(body):
        if statement.split()[0] in META_ARGUMENTS:
            meta.append(statement)
        else:  # a nested block becomes an object argument
            arguments.append(re.sub(r"^(\s*\w+)\s*\{\s*$", r"\1 = {", statement, flags=re.MULTILINE))
    # Arguments left null are not set: the input holds the others.
    return (
        f'resource "terraform_data" "{_standin_name("data" if kind == "data" else None, type_, name)}" {{\n'
        f"{''.join(meta)}"
        f"  input = {{ for key, value in {{\n{''.join(arguments)}  }} : key => value if value != null }}\n"
        "}\n"
    )


def standin(folder: Path) -> Path:
    """The stand-in of infra/terraform in ``folder``, initialized (built-in provider only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in TERRAFORM.glob("*.tf"):
        text = path.read_text()
        if path.name == "versions.tf":
            text = 'terraform {\n  required_version = ">= 1.5"\n}\n'
        text = REFERENCE.sub(_reference, BLOCK.sub(_block, text))
        assert "huaweicloud_" not in re.sub(r'"[^"\n]*"', "", text), f"{path.name}: a block left as it was"
        (folder / path.name).write_text(text)
    _terraform(folder, "init", "-backend=false", "-input=false")
    return folder


def _terraform(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["terraform", *arguments, "-no-color"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _package(folder: Path) -> Path:
    """A zip and the manifest ecs-detach package writes beside it, with every extra."""
    path = folder / "ecs-detach.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.py", "")
    manifest = {
        "python": "3.12",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "extras": ["notify", "postgres", "rabbitmq", "redis", "webhooks"],
    }
    (folder / "ecs-detach.manifest.json").write_text(json.dumps(manifest))
    return path


# Every function, trigger and option: the notify function, the history recorder, API Gateway with
# its domain, both DMS triggers.
EVERYTHING = {
    "region": '"ap-southeast-1"',
    "python_version": '"3.12"',
    "delay_topic_url": '"redis://10.0.0.5:6379/0"',
    "vpc_id": '"00000000-0000-4000-8000-000000000001"',
    "network_id": '"00000000-0000-4000-8000-000000000002"',
    "notify_channels": '[{ name = "ops", kind = "slack", url = "https://hooks.slack.com/x" }]',
    "history_writer": '"recorder"',
    "history_url": '"postgresql://ecs:pw@rds.internal:5432/h"',
    "history_vpc_id": '"00000000-0000-4000-8000-0000000000aa"',
    "history_network_id": '"00000000-0000-4000-8000-0000000000ab"',
    "apig_instance_id": '"0123456789abcdef0123456789abcdef"',
    "apig_app_code": f'"{"c" * 64}"',
    "webhook_bearer_tokens": f'["{"t" * 32}"]',
    "webhook_domain": '"ecs-detach.example.com"',
    "webhook_certificate_id": f'"{"a" * 32}"',
    "kafka_trigger": '{ instance_id = "i", topic_ids = ["t"] }',
    "rabbitmq_trigger": '{ instance_id = "i", exchange_name = "e", user_name = "u" }',
    "rabbitmq_password": '"p"',
}
# The fewest settings: the delay topic through the functions' VPC, nothing optional.
FEWEST = {
    name: EVERYTHING[name] for name in ("region", "python_version", "delay_topic_url", "vpc_id", "network_id")
}


def _plan(folder: Path, values: dict[str, str], state: dict[str, Any] | None = None) -> dict[str, Any]:
    """terraform plan of the stand-in for these variables (HCL values), from ``state``: its JSON."""
    package = _package(folder)
    lines = [f"{name} = {value}" for name, value in {**values, "package_path": f'"{package}"'}.items()]
    (folder / "test.tfvars").write_text("\n".join(lines) + "\n")
    (folder / "terraform.tfstate").unlink(missing_ok=True)
    if state is not None:
        (folder / "terraform.tfstate").write_text(json.dumps(state))
    _terraform(folder, "plan", "-refresh=false", "-input=false", "-var-file=test.tfvars", "-out=test.tfplan")
    plan: dict[str, Any] = json.loads(_terraform(folder, "show", "-json", "test.tfplan").stdout)
    return plan


def _old_state() -> dict[str, Any]:
    """A state at the addresses the functions, triggers and async settings had before they shared
    one resource each (count ones at index 0), as Terraform writes it."""
    resources: dict[str, dict[str, Any]] = {}
    for old in OLD_ADDRESSES:
        address, _, index = standin_address(old).partition("[")
        _, name = address.split(".")
        resource = resources.setdefault(
            name,
            {
                "mode": "managed",
                "type": "terraform_data",
                "name": name,
                "provider": 'provider["terraform.io/builtin/terraform"]',
                "instances": [],
            },
        )
        instance: dict[str, Any] = {
            "schema_version": 0,
            "attributes": {"id": old, "input": None, "output": None, "triggers_replace": None},
            "sensitive_attributes": [],
        }
        if index:
            resource["each"] = "list"
            instance["index_key"] = int(index.rstrip("]"))
        resource["instances"].append(instance)
    return {
        "version": 4,
        "terraform_version": "1.5.0",
        "serial": 1,
        "lineage": "00000000-0000-4000-8000-000000000000",
        "outputs": {},
        "resources": list(resources.values()),
    }


def test_terraform_validates_the_standin(tmp_path: Path) -> None:
    _terraform(standin(tmp_path), "validate")


def test_terraform_moves_every_old_address_and_destroys_nothing(tmp_path: Path) -> None:
    """From a state at the old addresses, the plan moves each to its new one (moved.tf) and
    neither creates nor destroys any of them."""
    plan = _plan(standin(tmp_path), EVERYTHING, _old_state())
    changes = {change["address"]: change for change in plan["resource_changes"]}
    for old, new in OLD_ADDRESSES.items():
        change = changes[standin_address(new)]
        assert change.get("previous_address") == standin_address(old), new
        assert change["change"]["actions"] in (["update"], ["no-op"]), new
    assert not [c["address"] for c in plan["resource_changes"] if "delete" in c["change"]["actions"]]


@pytest.mark.parametrize(
    ("values", "functions"),
    [
        (FEWEST, {"detach", "poll", "flush", "relay"}),
        (EVERYTHING, {"detach", "poll", "flush", "relay", "notify", "history"}),
    ],
    ids=["fewest", "everything"],
)
def test_terraform_creates_each_function_when_its_condition_holds(
    tmp_path: Path, values: dict[str, str], functions: set[str]
) -> None:
    """Every precondition holds (the plan succeeds); the functions are those whose condition holds,
    and each has its triggers and dead letters."""
    plan = _plan(standin(tmp_path), values)
    created = {c["address"] for c in plan["resource_changes"] if c["change"]["actions"] == ["create"]}
    assert {a for a in created if a.startswith("terraform_data.fgs_function__functions[")} == {
        standin_address(f'huaweicloud_fgs_function.functions["{name}"]') for name in functions
    }
    for new in OLD_ADDRESSES.values():
        function = re.search(r'\["(\w+)"\]', new)
        assert function
        assert (standin_address(new) in created) == (function.group(1) in functions), new


@pytest.mark.parametrize(
    ("values", "instance", "message"),
    [
        (
            {"detach_timeout_s": "20"},
            "fgs_function__functions detach",
            "detach_timeout_s must cover 5 cloud calls",
        ),
        ({"network_id": '""'}, "fgs_function__functions detach", "network_id is required with vpc_id."),
        (
            {"python_version": '"3.10"'},
            "fgs_function__functions detach",
            "The package cannot serve this deployment",
        ),
        ({"poll_timeout_s": "10"}, "fgs_function__functions poll", "poll_timeout_s must cover 3 cloud calls"),
        ({"first_poll_s": "500"}, "fgs_function__functions poll", "The poll schedule needs first_poll_s"),
        (
            {"vpc_id": '""', "network_id": '""'},
            "fgs_function__functions flush",
            "The delay topic (Redis or RabbitMQ) is reached through a VPC",
        ),
        (
            {"history_writer": '"recorder"', "history_url": '"sqlite:////tmp/h.db"'},
            "fgs_function__functions history",
            'history_writer = "recorder" records into a postgresql://',
        ),
        (
            {
                "history_writer": '"recorder"',
                "history_url": '"postgresql://h/x"',
                "history_vpc_id": '"00000000-0000-4000-8000-0000000000aa"',
            },
            "fgs_function__functions history",
            "The history recorder reaches the database through a VPC",
        ),
        (
            {"async_event_max_age_s": "300"},
            "fgs_async_invoke_configuration__functions poll",
            "async_event_max_age_s must outlast a job",
        ),
    ],
)
def test_terraform_refuses_a_plan_on_the_instance_whose_rule_fails(
    tmp_path: Path, values: dict[str, str], instance: str, message: str
) -> None:
    """Terraform evaluates `each.key != "<function>" || <rule>` per instance: the plan fails on
    that function's instance (stand-in resource, each.key), with its message, and on no other."""
    folder = standin(tmp_path)
    package = _package(folder)
    settings = {**FEWEST, **values, "package_path": f'"{package}"'}
    (folder / "test.tfvars").write_text("".join(f"{name} = {value}\n" for name, value in settings.items()))
    result = subprocess.run(
        ["terraform", "plan", "-refresh=false", "-input=false", "-var-file=test.tfvars", "-no-color"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    errors = " ".join(result.stderr.split())
    assert message in errors, errors
    failing = re.findall(
        r"Error: Resource precondition failed on \w+\.tf line \d+, "
        r'in resource "terraform_data" "(\w+)": .*?each\.key is "(\w+)"',
        errors,
    )
    assert {" ".join(pair) for pair in failing} == {instance}, errors

"""infra/terraform, parsed with python-hcl2: resource types, wiring, policy, handlers, timeouts."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from handler.local.package import IAM_ACTIONS, SMN_PUBLISH_ACTION, PackageReport, build_package
from handler.support.extras import SCHEME_EXTRAS
from tests.infra.conftest import INFRA, ROOT

TERRAFORM = INFRA / "terraform"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

FUNCTION_REF = re.compile(r'^\$\{huaweicloud_fgs_function\.functions\["(\w+)"\]\.urn\}$')
# The function of each instance of a for_each resource over local.functions.
EACH_FUNCTION_REF = "${huaweicloud_fgs_function.functions[each.key].urn}"


@dataclass
class Config:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    moved: list[dict[str, str]] = field(default_factory=list)

    def resource(self, address: str) -> dict[str, Any]:
        kind, name = address.split(".")
        return self.resources[kind][name]


def _load() -> Config:
    config = Config()
    for path in sorted(TERRAFORM.glob("*.tf")):
        document = hcl2.loads(path.read_text(), serialization_options=OPTIONS)
        for block in document.get("resource", []):
            for kind, named in block.items():
                config.resources.setdefault(kind, {}).update(named)
        for block in document.get("data", []):
            for kind, named in block.items():
                config.data.setdefault(kind, {}).update(named)
        for block in document.get("variable", []):
            config.variables.update(block)
        for block in document.get("locals", []):
            config.locals.update(block)
        for block in document.get("output", []):
            config.outputs.update(block)
        config.moved += document.get("moved", [])
    return config


CONFIG = _load()


def _strip(expression: str) -> str:
    assert expression.startswith("${"), expression
    assert expression.endswith("}"), expression
    return expression[2:-1]


class Evaluator:
    """Evaluates the small expression language of the preconditions and counts (references,
    arithmetic, comparisons, !, &&, ||, ?:, length, contains, keys) for given variable values."""

    def __init__(self, values: Mapping[str, Any], each_key: str | None = None) -> None:
        self.values = {name: spec.get("default") for name, spec in CONFIG.variables.items()} | dict(values)
        self.each_key = each_key

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            return self._eval(_strip(value))
        return value

    def local(self, name: str) -> Any:
        return self(CONFIG.locals[name])

    def _eval(self, expression: str) -> Any:
        ternary = re.fullmatch(r"(.+?)\?(.+):(.+)", expression)
        if ternary and "?" not in ternary.group(2):
            condition, yes, no = ternary.groups()
            return self._eval(yes) if self._eval(condition) else self._eval(no)
        python = re.sub(r"\bvar\.(\w+)", r"var['\1']", expression)
        python = re.sub(r"\blocal\.(\w+)", r"local('\1')", python)
        python = re.sub(r"\beach\.key\b", "each_key", python)
        python = python.replace("||", " or ").replace("&&", " and ")
        python = re.sub(r"!(?!=)", " not ", python)
        names: dict[str, Any] = {
            "var": self.values,
            "local": self.local,
            "each_key": self.each_key,
            "length": len,
            "contains": lambda collection, item: item in collection,
            "startswith": lambda text, prefix: text.startswith(prefix),
            "keys": list,
            "nonsensitive": lambda value: value,
            "null": None,
            "true": True,
            "false": False,
        }
        return eval(python, {"__builtins__": {}}, names)


def _example_values() -> dict[str, Any]:
    """example.tfvars: plain assignments of literals."""
    document = hcl2.loads((TERRAFORM / "example.tfvars").read_text(), serialization_options=OPTIONS)
    return {name: value for name, value in document.items() if not name.startswith("__")}


# The defaults plus what has none: the delay topic, reached through the functions' VPC.
REQUIRED = {
    "delay_topic_url": "redis://10.0.0.5:6379/0",
    "vpc_id": "00000000-0000-4000-8000-000000000001",
    "network_id": "00000000-0000-4000-8000-000000000002",
}


FUNCTIONS = (
    "${{for name, settings in local.function_settings : "
    "name => merge(local.function_defaults, settings) if settings.enabled}}"
)


def _settings(name: str) -> dict[str, Any]:
    """local.functions[name] as Terraform's merge() makes it (the entry wins), whatever enabled says."""
    assert CONFIG.locals["functions"] == FUNCTIONS
    settings: dict[str, Any] = CONFIG.locals["function_defaults"] | CONFIG.locals["function_settings"][name]
    return settings


def _functions(values: Mapping[str, Any]) -> set[str]:
    """The keys of local.functions for these variables: the functions this configuration creates."""
    evaluate = Evaluator(values)
    return {
        name for name in CONFIG.locals["function_settings"] if evaluate(_settings(name)["enabled"]) is True
    }


# The for_each expressions over local.functions → which functions get an instance.
FOR_EACH = {
    "${local.functions}": lambda settings: True,
    "${{for name, function in local.functions : name => function.smn_topic if function.smn_topic != null}}": (
        lambda settings: settings["smn_topic"] is not None
    ),
    "${{for name, function in local.functions : name => function.timer if function.timer != null}}": (
        lambda settings: settings["timer"] is not None
    ),
    "${toset([for name, function in local.functions : name if function.dead_letters])}": (
        lambda settings: settings["dead_letters"] is True
    ),
}


def _instance_keys(body: dict[str, Any], functions: set[str]) -> list[str]:
    """The instance keys of a for_each resource over local.functions, given the functions that exist."""
    keep = FOR_EACH[body["for_each"]]
    return sorted(name for name in functions if keep(_settings(name)))


def _function(name: str) -> dict[str, Any]:
    """The huaweicloud_fgs_function instance of one function, as its own resource block would read:
    each.value.X replaced by the function's settings (null: not set), each.key by its name."""
    body = CONFIG.resource("huaweicloud_fgs_function.functions")
    settings = _settings(name)
    secrets = CONFIG.locals["function_secret_environments"]
    assert body["encrypted_user_data"] == (
        "${lookup(local.function_secret_environments, each.key, jsonencode(local.secret_environment))}"
    )
    rendered: dict[str, Any] = {}
    for key, written in body.items():
        if key in ("for_each", "lifecycle"):
            continue
        value = written
        if key == "encrypted_user_data":
            value = secrets.get(name, "${jsonencode(local.secret_environment)}")
        elif isinstance(written, str) and re.fullmatch(r"\$\{each\.value\.\w+\}", written):
            value = settings[written[len("${each.value.") : -1]]
        elif isinstance(written, str):
            value = written.replace("local.handlers[each.key]", f"local.handlers.{name}")
            value = value.replace("each.key", f'"{name}"').replace('${"' + name + '"}', name)
        if value is not None:
            rendered[key] = value
    return rendered


def _function_instances(values: Mapping[str, Any]) -> set[str]:
    """The addresses of the instances of every for_each resource over local.functions."""
    return _function_instances_of(_functions(values))


def _function_instances_of(functions: set[str]) -> set[str]:
    """The instances of every for_each resource over local.functions when ``functions`` exist."""
    return {
        f'{kind}.{name}["{key}"]'
        for kind, named in CONFIG.resources.items()
        for name, body in named.items()
        if "for_each" in body
        for key in _instance_keys(body, functions)
    }


def _preconditions(values: Mapping[str, Any]) -> dict[str, bool]:
    """Every precondition of every resource instance these variables create, by
    resource address (with its instance key), then the precondition's index."""
    evaluate = Evaluator(values)
    functions = _functions(values)
    results = {}
    for kind, named in CONFIG.resources.items():
        for name, body in named.items():
            if "count" in body and not evaluate(body["count"]):
                continue
            keys: list[str | None] = [None]
            if "for_each" in body:
                keys = list(_instance_keys(body, functions))
            for key in keys:
                address = f"{kind}.{name}" if key is None else f'{kind}.{name}["{key}"]'
                instance = Evaluator(values, each_key=key)
                for lifecycle in body.get("lifecycle", []):
                    for index, precondition in enumerate(lifecycle.get("precondition", [])):
                        if "local.package_problems" in precondition["condition"]:
                            continue  # reads files: test_terraform_checks_the_package runs Terraform on it
                        results[f"{address}[{index}]"] = bool(instance(precondition["condition"]))
    return results


def _function_refs() -> dict[str, str]:
    """Every function_urn in triggers, async configurations and API backends → the function
    (a for_each resource over local.functions: each of its possible instances)."""
    refs = {}
    every_function = set(CONFIG.locals["function_settings"])
    for kind in ("huaweicloud_fgs_function_trigger", "huaweicloud_fgs_async_invoke_configuration"):
        for name, body in CONFIG.resources[kind].items():
            if "for_each" in body:
                assert body["function_urn"] == EACH_FUNCTION_REF, f"{kind}.{name}"
                for key in _instance_keys(body, every_function):
                    refs[f'{kind}.{name}["{key}"]'] = EACH_FUNCTION_REF.replace("each.key", f'"{key}"')
            else:
                refs[f"{kind}.{name}"] = body["function_urn"]
    for name, body in CONFIG.resources["huaweicloud_apig_api"].items():
        refs[f"huaweicloud_apig_api.{name}"] = body["func_graph"][0]["function_urn"]
    return refs


def test_every_trigger_points_at_an_existing_function() -> None:
    assert set(CONFIG.resources["huaweicloud_fgs_function"]) == {"functions"}
    assert CONFIG.resource("huaweicloud_fgs_function.functions")["for_each"] == "${local.functions}"
    functions = set(CONFIG.locals["function_settings"])
    targets = {}
    for address, ref in _function_refs().items():
        match = FUNCTION_REF.match(ref)
        assert match, f"{address}: {ref}"
        assert match.group(1) in functions, f"{address}: {ref}"
        targets[address] = match.group(1)
    assert targets == {
        'huaweicloud_fgs_function_trigger.smn["poll"]': "poll",
        'huaweicloud_fgs_function_trigger.timer["flush"]': "flush",
        'huaweicloud_fgs_function_trigger.timer["relay"]': "relay",
        'huaweicloud_fgs_function_trigger.smn["notify"]': "notify",
        'huaweicloud_fgs_function_trigger.smn["history"]': "history",
        "huaweicloud_fgs_function_trigger.kafka": "detach",
        "huaweicloud_fgs_function_trigger.rabbitmq": "detach",
        'huaweicloud_fgs_async_invoke_configuration.functions["poll"]': "poll",
        'huaweicloud_fgs_async_invoke_configuration.functions["detach"]': "detach",
        'huaweicloud_fgs_async_invoke_configuration.functions["notify"]': "notify",
        'huaweicloud_fgs_async_invoke_configuration.functions["history"]': "history",
        "huaweicloud_apig_api.webhooks": "detach",
    }


def test_topics_are_wired() -> None:
    environment = CONFIG.locals["managed_environment"]
    assert environment["ECS_DETACH_JOBS_TOPIC"] == "smn://${huaweicloud_smn_topic.jobs.topic_urn}"
    assert environment["ECS_DETACH_RESULTS_TOPIC"] == "smn://${huaweicloud_smn_topic.results.topic_urn}"
    smn_trigger = CONFIG.resource("huaweicloud_fgs_function_trigger.smn")
    assert smn_trigger["type"] == "SMN"
    assert smn_trigger["event_data"] == "${jsonencode({topic_urn = local.topic_urns[each.value]})}"
    assert _settings("poll")["smn_topic"] == "jobs"
    assert CONFIG.locals["topic_urns"]["jobs"] == "${huaweicloud_smn_topic.jobs.topic_urn}"
    assert CONFIG.locals["topic_urns"]["results"] == "${huaweicloud_smn_topic.results.topic_urn}"
    dead_letters = CONFIG.resource("huaweicloud_fgs_async_invoke_configuration.functions")
    assert set(_instance_keys(dead_letters, set(CONFIG.locals["function_settings"]))) >= {"poll", "detach"}
    failure = dead_letters["on_failure"][0]
    assert failure["destination"] == "SMN"
    assert "huaweicloud_smn_topic.dead_letter.topic_urn" in failure["param"]
    for name in ("detach", "poll", "flush", "relay"):
        function = _function(name)
        assert function["user_data"] == "${jsonencode(local.environment)}"
        assert function["encrypted_user_data"] == "${jsonencode(local.secret_environment)}"
        assert function["code_type"] == "zip"
        assert function["func_code"] == "${filebase64(var.package_path)}"
        assert function["runtime"] == "${local.runtime}"
    assert (
        CONFIG.locals["environment"]
        == "${merge(local.default_environment, var.extra_environment, local.managed_environment)}"
    )
    assert CONFIG.locals["default_environment"] == {"ECS_DETACH_HISTORY_WAIT_S": "1"}
    assert set(CONFIG.locals["secret_environment"]) == {
        "ECS_DETACH_STORE",
        "ECS_DETACH_HISTORY",
        "ECS_DETACH_DELAY_TOPIC",
        "ECS_DETACH_WEBHOOK_BEARER_TOKENS",
        "ECS_DETACH_WEBHOOK_HMAC_SECRETS",
    }


def test_handler_names_exist_in_the_package(package: PackageReport) -> None:
    handlers = CONFIG.locals["handlers"]
    for name in ("detach", "poll", "flush", "relay", "notify"):
        function = _function(name)
        assert function["handler"] == f"${{local.handlers.{name}}}"
        assert function["initializer_handler"] == "${local.handlers.init}"
    history = _function("history")
    assert history["handler"] == "${local.handlers.history}"
    assert "initializer_handler" not in history  # it builds no runtime: nothing to initialize
    with zipfile.ZipFile(package.path) as archive:
        for dotted in handlers.values():
            module, _, attribute = dotted.rpartition(".")
            assert module == "index", dotted  # FunctionGraph's documented file.function form
            entry = ast.parse(archive.read("index.py").decode())
            (imported,) = [node for node in entry.body if isinstance(node, ast.ImportFrom)]
            assert attribute in {alias.name for alias in imported.names}, dotted
            source = archive.read(str(imported.module).replace(".", "/") + ".py").decode()
            defined = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
            assert attribute in defined, dotted


def test_policy_grants_exactly_the_actions_the_code_calls() -> None:
    assert set(CONFIG.locals["iam_actions"]) == IAM_ACTIONS
    assert CONFIG.locals["smn_actions"] == [SMN_PUBLISH_ACTION]
    statements = CONFIG.locals["policy_document"]["Statement"]
    assert [statement["Action"] for statement in statements] == [
        "${local.iam_actions}",
        "${local.smn_actions}",
    ]
    assert all(statement["Effect"] == "Allow" for statement in statements)
    role = CONFIG.resource("huaweicloud_identity_role.functions")
    assert role["policy"] == "${jsonencode(local.policy_document)}"
    agency = CONFIG.resource("huaweicloud_identity_agency.functions")
    assert agency["delegated_service_name"] == "op_svc_cff"
    assert agency["project_role"][0]["roles"] == ["${huaweicloud_identity_role.functions.name}"]
    for name in CONFIG.locals["function_settings"]:
        function = _function(name)
        assert function["app_agency"] == "${huaweicloud_identity_agency.functions.name}"


def test_security_doc_lists_the_same_actions() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    block = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert block is not None
    (statement,) = json.loads(block.group(1))["Statement"]
    assert set(statement["Action"]) == IAM_ACTIONS


def test_timeouts_fit_the_poll_schedule() -> None:
    detach = _function("detach")
    environment = CONFIG.locals["managed_environment"]
    # One variable sets the function timeout, the claim's lapse and the API backend timeout.
    assert detach["timeout"] == "${var.detach_timeout_s}"
    assert environment["ECS_DETACH_INVOCATION_TIMEOUT_S"] == "${tostring(var.detach_timeout_s)}"
    api = CONFIG.resource("huaweicloud_apig_api.webhooks")["func_graph"][0]
    assert api["timeout"] == "${var.detach_timeout_s * 1000}"
    assert _function("poll")["timeout"] == "${var.poll_timeout_s}"
    for values in (REQUIRED, _example_values()):
        evaluate = Evaluator(values)
        budget = evaluate.local("call_budget_s")
        assert evaluate("${var.detach_timeout_s}") >= evaluate.local("detach_calls") * budget
        assert evaluate("${var.poll_timeout_s}") >= evaluate.local("poll_calls") * budget
        assert evaluate("${var.first_poll_s}") <= evaluate("${var.max_poll_delay_s}")
        assert evaluate("${var.max_poll_delay_s}") < evaluate("${var.job_timeout_s}")
        assert evaluate("${var.async_event_max_age_s}") >= evaluate("${var.job_timeout_s}") + evaluate(
            "${var.max_poll_delay_s}"
        )


@pytest.mark.parametrize("values", [REQUIRED, _example_values()], ids=["defaults", "example.tfvars"])
def test_every_precondition_holds(values: dict[str, Any]) -> None:
    results = _preconditions(values)
    assert results
    assert all(results.values()), results


def test_preconditions_catch_short_timeouts() -> None:
    results = _preconditions(
        {**REQUIRED, "detach_timeout_s": 20, "poll_timeout_s": 10, "async_event_max_age_s": 300}
    )
    assert not results['huaweicloud_fgs_function.functions["detach"][0]']
    assert not results['huaweicloud_fgs_function.functions["poll"][3]']
    assert not results['huaweicloud_fgs_async_invoke_configuration.functions["poll"][0]']
    # Each function's preconditions hold for the others.
    assert results['huaweicloud_fgs_function.functions["flush"][0]']
    assert results['huaweicloud_fgs_async_invoke_configuration.functions["detach"][0]']


def test_variables_are_described_and_validated() -> None:
    unvalidated = {"tags", "kafka_password", "rabbitmq_password"}
    for name, spec in CONFIG.variables.items():
        assert spec.get("description"), name
        assert "type" in spec, name
        if name not in unvalidated:
            assert spec.get("validation"), name
    for secret in (
        "store_url",
        "delay_topic_url",
        "webhook_bearer_tokens",
        "webhook_hmac_secrets",
        "apig_app_code",
        "kafka_password",
        "rabbitmq_password",
        "notify_channels",
        "history_url",  # postgresql://user:password@…
    ):
        assert CONFIG.variables[secret].get("sensitive") is True, secret


def test_outputs() -> None:
    for name in (
        "webhook_url",
        "jobs_topic_urn",
        "results_topic_urn",
        "dead_letter_topic_urn",
        "notify_function_urn",
        "history_function_urn",
    ):
        assert CONFIG.outputs[name].get("description"), name
    assert "sl_domain" in CONFIG.locals["debugging_domain"]


def test_api_gateway_authenticates() -> None:
    api = CONFIG.resource("huaweicloud_apig_api.webhooks")
    assert api["security_authentication"] == "${var.apig_authentication}"
    assert CONFIG.variables["apig_authentication"]["default"] != "NONE"
    assert api["request_protocol"] == "HTTPS"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt() -> None:
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-no-color", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_flush_function_runs_on_a_timer_with_a_shared_delay_topic() -> None:
    flush = _function("flush")
    assert flush["timeout"] == "${var.flush_timeout_s}"
    timer = CONFIG.resource("huaweicloud_fgs_function_trigger.timer")
    assert timer["type"] == "TIMER"
    assert "schedule_type" in timer["event_data"]
    assert "Rate" in timer["event_data"]
    assert "schedule = each.value" in timer["event_data"]
    assert _settings("flush")["timer"] == "1m"
    assert _instance_keys(timer, set(CONFIG.locals["function_settings"])) == ["flush", "relay"]
    assert CONFIG.locals["secret_environment"]["ECS_DETACH_DELAY_TOPIC"] == "${var.delay_topic_url}"
    without_vpc = _preconditions({**REQUIRED, "vpc_id": "", "network_id": ""})
    assert not without_vpc['huaweicloud_fgs_function.functions["flush"][5]']


def test_the_relay_function_sweeps_the_outbox_on_a_timer() -> None:
    relay = _function("relay")
    assert relay["handler"] == "${local.handlers.relay}"
    assert CONFIG.locals["handlers"]["relay"] == "index.relay_handler"
    timer = CONFIG.resource("huaweicloud_fgs_function_trigger.timer")
    assert timer["type"] == "TIMER"
    assert "Rate" in timer["event_data"]
    assert _settings("relay")["timer"] == "1m"
    assert "relay" in _instance_keys(timer, set(CONFIG.locals["function_settings"]))


def test_the_notify_function_takes_the_results_topic_only_with_channels() -> None:
    notify = _function("notify")
    assert CONFIG.locals["handlers"]["notify"] == "index.notify_handler"
    assert notify["code_type"] == "zip"
    assert notify["func_code"] == "${filebase64(var.package_path)}"
    assert notify["user_data"] == "${jsonencode(local.notify_environment)}"
    assert notify["encrypted_user_data"] == "${jsonencode(local.notify_secret_environment)}"
    assert "local.environment" in CONFIG.locals["notify_environment"]
    assert "ECS_DETACH_NOTIFY_OUTCOMES" in CONFIG.locals["notify_environment"]
    secrets = CONFIG.locals["notify_secret_environment"]
    assert "local.secret_environment" in secrets
    assert "ECS_DETACH_NOTIFY_CHANNELS = jsonencode(var.notify_channels)" in secrets
    assert _settings("notify")["smn_topic"] == "results"  # test_topics_are_wired: the SMN trigger's topic
    assert _settings("notify")["dead_letters"] is True
    channel = {"name": "ops", "kind": "slack", "url": "https://hooks.slack.com/services/T/B/x"}
    addresses = {
        'huaweicloud_fgs_function.functions["notify"]',
        'huaweicloud_fgs_function_trigger.smn["notify"]',
        'huaweicloud_fgs_async_invoke_configuration.functions["notify"]',
    }
    assert not addresses & _function_instances(REQUIRED)  # no channels: no notify function
    assert addresses <= _function_instances({**REQUIRED, "notify_channels": [channel]})


# Trigger types the FunctionGraph API creates DISABLED (provider docs, fgs_function_trigger.md).
CREATED_DISABLED = {"KAFKA", "DDS"}


def test_triggers_created_disabled_are_switched_on() -> None:
    """The provider sends a trigger's `status` only on update (since 1.75.2): a trigger type
    the API creates DISABLED needs a status action that sets it ACTIVE after creation."""
    actions = CONFIG.resources.get("huaweicloud_fgs_function_trigger_status_action", {})
    for name, trigger in CONFIG.resources["huaweicloud_fgs_function_trigger"].items():
        if trigger["type"] not in CREATED_DISABLED:
            continue
        (action,) = [
            a for a in actions.values() if f"huaweicloud_fgs_function_trigger.{name}[0].id" in a["trigger_id"]
        ]
        assert action["trigger_status"] == "ACTIVE"
        assert action["trigger_type_code"] == trigger["type"]
        assert action["function_urn"] == trigger["function_urn"]
        assert action["event_data"] == trigger["event_data"]
        assert action.get("count") == trigger.get("count")


APIG = {
    **REQUIRED,
    "apig_instance_id": "0123456789abcdef0123456789abcdef",
    "apig_app_code": "c" * 64,
    "webhook_bearer_tokens": ["t" * 32],
}


def test_webhook_url_is_the_independent_domain_else_the_enabled_debugging_domain() -> None:
    """The debugging domain is off unless domain_access_enabled, and takes 1,000 calls a day:
    with webhook_domain the group gets that domain and its certificate, and the outputs name it."""
    group = CONFIG.resource("huaweicloud_apig_group.webhooks")
    assert group["domain_access_enabled"] == '${var.webhook_domain == ""}'
    assert Evaluator(APIG)(group["domain_access_enabled"]) is True
    domain = {**APIG, "webhook_domain": "ecs-detach.example.com", "webhook_certificate_id": "a" * 32}
    assert Evaluator(domain)(group["domain_access_enabled"]) is False
    associate = CONFIG.resource("huaweicloud_apig_group_domain_associate.webhooks")
    assert associate["url_domain"] == "${var.webhook_domain}"
    assert Evaluator(domain)(associate["count"]) == 1
    assert Evaluator(APIG)(associate["count"]) == 0
    certificate = CONFIG.resource("huaweicloud_apig_domain_certificate_associate.webhooks")
    assert certificate["domain_id"] == "${huaweicloud_apig_group_domain_associate.webhooks[0].domain_id}"
    assert all(_preconditions(domain).values())
    without_certificate = _preconditions({**domain, "webhook_certificate_id": ""})
    assert not without_certificate["huaweicloud_apig_domain_certificate_associate.webhooks[0]"]
    host = CONFIG.locals["webhook_host"]
    assert host == "${local.use_domain ? var.webhook_domain : local.debugging_domain}"
    assert (
        CONFIG.outputs["webhook_url"]["value"]
        == '${local.use_apig ? "https://${local.webhook_host}/" : null}'
    )
    assert "/alertmanager" in CONFIG.outputs["alertmanager_url"]["value"]
    assert "1,000 calls a day" in CONFIG.outputs["webhook_url_kind"]["value"]


def _variable_errors(tmp_path: Path, values: Mapping[str, str], var_file: Path | None = None) -> str:
    """Terraform's own validation of variables.tf for ``values`` (terraform console needs no
    provider): the messages of the variables it refuses, empty when it accepts them all."""
    shutil.copy(TERRAFORM / "variables.tf", tmp_path / "variables.tf")
    required = {"region": "ap-southeast-1", "package_path": "p.zip", "delay_topic_url": "redis://h:6379"}
    arguments = [f"-var={name}={value}" for name, value in {**required, **values}.items()]
    if var_file is not None:
        arguments = [f"-var-file={var_file}"]
    result = subprocess.run(
        ["terraform", "console", "-no-color", *arguments],
        input="1\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    return output if "Invalid value for variable" in output else ""


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({"async_retry_attempts": "3"}, None),
        ({"async_retry_attempts": "5"}, "0 to 3"),
        ({"cloud": "huaweicloud-eu", "python_version": "3.10"}, None),
        ({"cloud": "otc"}, "Huawei Cloud only"),
        ({"cloud": "flexibleengine"}, "Huawei Cloud only"),
        ({"python_version": "3.11"}, "3.10 or 3.12"),
        ({"notify_channels": '[{name="ops", kind="slack", url="https://hooks.slack.com/x"}]'}, None),
        ({"notify_channels": '[{name="mail", kind="smn", topic_urn="urn:smn:r:p:t"}]'}, None),
        ({"notify_channels": '[{name="Ops!", kind="slack", url="https://h"}]'}, "Each channel has a name"),
        ({"notify_channels": '[{name="ops", kind="irc", url="https://h"}]'}, "Each channel has a name"),
        ({"notify_channels": '[{name="ops", kind="slack", url="http://h"}]'}, "an https:// url"),
        ({"notify_channels": '[{name="mail", kind="smn"}]'}, "(smn: a topic_urn)"),
        (
            {
                "notify_channels": '[{name="a", kind="wecom", url="https://h"}, {name="a", kind="teams", url="https://h"}]'
            },
            "unique",
        ),
        ({"notify_outcomes": '["sent"]'}, "The outcomes are"),
        ({"history_url": "postgresql://ecs:pw@rds.internal:5432/ecs_detach?sslmode=verify-full"}, None),
        ({"history_url": "postgres://rds.internal/ecs_detach"}, None),
        ({"history_url": "sqlite:////tmp/ecs-detach/history.db"}, None),
        ({"history_url": "postgresql:///ecs_detach"}, "The history is off, postgresql://"),
        ({"history_url": "sqlite:///.ecs-detach/history.db"}, "The history is off, postgresql://"),
        ({"history_url": "mysql://rds.internal/h"}, "The history is off, postgresql://"),
        ({"history_writer": "recorder"}, None),
        ({"history_writer": "both"}, "history_writer is functions or recorder"),
        ({"history_vpc_id": "vpc-1"}, "The VPC ID is empty or a UUID"),
    ],
)
def test_terraform_validates_the_variables(
    tmp_path: Path, values: dict[str, str], refused: str | None
) -> None:
    errors = _variable_errors(tmp_path, values)
    if refused is None:
        assert errors == ""
    else:
        assert refused in " ".join(errors.split())  # Terraform wraps its messages


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_accepts_example_tfvars(tmp_path: Path) -> None:
    assert _variable_errors(tmp_path, {}, TERRAFORM / "example.tfvars") == ""


def test_the_provider_talks_to_the_configured_cloud() -> None:
    text = (TERRAFORM / "versions.tf").read_text()
    assert 'cloud  = var.cloud == "huaweicloud-eu" ? "myhuaweicloud.eu" : "myhuaweicloud.com"' in text
    assert CONFIG.locals["runtime"] == "Python${var.python_version}"


@pytest.fixture(scope="module")
def redis_package(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> PackageReport:
    """A package for FunctionGraph's Python 3.12 with the redis extra."""
    return build_package("3.12", tmp_path_factory.mktemp("dist312"), extras=["redis"], wheelhouse=wheelhouse)


def _package_problems(tmp_path: Path, package: Path, values: Mapping[str, str]) -> list[str]:
    """local.package_problems as Terraform evaluates it (variables.tf and package.tf only)."""
    tmp_path.mkdir(exist_ok=True)
    for name in ("variables.tf", "package.tf"):
        shutil.copy(TERRAFORM / name, tmp_path / name)
    arguments = [
        f"-var={name}={value}"
        for name, value in {"region": "ap-southeast-1", "package_path": str(package), **values}.items()
    ]
    result = subprocess.run(
        ["terraform", "console", "-no-color", *arguments],
        input="jsonencode(local.package_problems)\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    problems: list[str] = json.loads(json.loads(result.stdout.strip()))
    return problems


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
@pytest.mark.slow
def test_terraform_checks_the_package(redis_package: PackageReport, tmp_path: Path) -> None:
    """The plan refuses a package that cannot serve the configured URLs, another Python, or a
    manifest of another zip; a matching package passes."""
    redis = {"delay_topic_url": "rediss://:pw@redis.internal:6379/0", "python_version": "3.12"}
    assert _package_problems(tmp_path / "ok", redis_package.path, redis) == []
    amqp = {**redis, "delay_topic_url": "amqps://u:pw@mq.internal:5671/"}
    (problem,) = _package_problems(tmp_path / "amqp", redis_package.path, amqp)
    assert "needs the rabbitmq extra" in problem
    assert "ecs-detach package --python 3.12 --extra rabbitmq" in problem
    apig = {**redis, "apig_instance_id": "0123456789abcdef0123456789abcdef"}
    (problem,) = _package_problems(tmp_path / "apig", redis_package.path, apig)
    assert "API Gateway trigger needs the webhooks extra" in problem
    (problem,) = _package_problems(tmp_path / "py", redis_package.path, {**redis, "python_version": "3.10"})
    assert "built for Python 3.12, the functions run Python 3.10" in problem
    other = tmp_path / "other" / redis_package.path.name
    other.parent.mkdir()
    shutil.copy(redis_package.manifest, other.parent)
    other.write_bytes(redis_package.path.read_bytes() + b"\0")
    (problem,) = _package_problems(tmp_path / "sha", other, redis)
    assert "describes another zip" in problem
    history = {**redis, "history_url": "postgresql://ecs:pg-secret@rds.internal:5432/h"}
    (problem,) = _package_problems(tmp_path / "history", redis_package.path, history)
    assert "history or API Gateway trigger needs the postgres extra" in problem
    assert "--extra postgres --extra redis" in problem
    assert "pg-secret" not in problem
    recorder = {**history, "history_writer": "recorder"}  # the recorder runs the same package
    (problem,) = _package_problems(tmp_path / "recorder", redis_package.path, recorder)
    assert "needs the postgres extra" in problem
    channels = {"notify_channels": '[{name="ops", kind="slack", url="https://hooks.slack.com/x"}]'}
    (problem,) = _package_problems(tmp_path / "notify", redis_package.path, {**redis, **channels})
    assert "notify_channels needs the notify extra" in problem
    assert "ecs-detach package --python 3.12 --extra notify" in problem
    functions = CONFIG.resource("huaweicloud_fgs_function.functions")
    conditions = [p["condition"] for p in functions["lifecycle"][0]["precondition"]]
    assert '${each.key != "detach" || length(local.package_problems) == 0}' in conditions


def test_terraform_knows_the_extras_of_every_scheme() -> None:
    assert CONFIG.locals["scheme_extras"] == SCHEME_EXTRAS


HISTORY = "postgresql://ecs:pw@rds.internal:5432/ecs_detach"


def test_the_history_is_written_by_the_functions_or_by_a_recorder_of_the_results_topic() -> None:
    """history_writer = "functions" (the default): every function gets history_url and there is
    no recorder. "recorder": the functions keep none (off), and a function subscribed to the
    results topic gets history_url, in the database's VPC; it refuses any history but PostgreSQL."""
    secrets = CONFIG.locals["secret_environment"]
    assert secrets["ECS_DETACH_HISTORY"] == '${var.history_writer == "recorder" ? "off" : var.history_url}'
    on_functions = {**REQUIRED, "history_url": HISTORY}
    assert Evaluator(on_functions)(secrets["ECS_DETACH_HISTORY"]) == HISTORY
    recorder = {**on_functions, "history_writer": "recorder"}
    assert Evaluator(recorder)(secrets["ECS_DETACH_HISTORY"]) == "off"
    history = _function("history")
    assert CONFIG.locals["handlers"]["history"] == "index.history_handler"
    assert history["encrypted_user_data"] == "${jsonencode(local.history_secret_environment)}"
    assert "ECS_DETACH_HISTORY = var.history_url" in CONFIG.locals["history_secret_environment"]
    assert "local.secret_environment" in CONFIG.locals["history_secret_environment"]
    assert history["func_code"] == "${filebase64(var.package_path)}"
    assert _settings("history")["smn_topic"] == "results"  # test_topics_are_wired: the SMN trigger's topic
    assert _settings("history")["dead_letters"] is True
    addresses = {
        'huaweicloud_fgs_function.functions["history"]',
        'huaweicloud_fgs_function_trigger.smn["history"]',
        'huaweicloud_fgs_async_invoke_configuration.functions["history"]',
    }
    assert not addresses & _function_instances(on_functions)
    assert addresses <= _function_instances(recorder)
    assert history["agency"] == "${local.vpc_access_agency}"
    assert all(_preconditions(recorder).values())
    url = 'huaweicloud_fgs_function.functions["history"][6]'
    assert not _preconditions({**recorder, "history_url": "off"})[url]
    assert not _preconditions({**recorder, "history_url": "sqlite:////tmp/h.db"})[url]
    # Its own VPC, where the database is; else the functions'.
    own = {**recorder, "history_vpc_id": "00000000-0000-4000-8000-0000000000aa", "history_network_id": ""}
    evaluate = Evaluator(own)
    assert history["vpc_id"] == "${local.history_vpc_id}"
    assert evaluate.local("history_vpc_id") == "00000000-0000-4000-8000-0000000000aa"
    assert not _preconditions(own)[
        'huaweicloud_fgs_function.functions["history"][7]'
    ]  # its subnet is required
    assert Evaluator(recorder).local("history_network_id") == REQUIRED["network_id"]


# The precondition messages of each function, as they stood on its own resource block before the
# functions shared one (test_the_moved_blocks_move_every_old_address).
FUNCTION_PRECONDITIONS = {
    "detach": [
        "detach_timeout_s must cover 5 cloud calls of connect_timeout_s + http_timeout_s each.",
        "network_id is required with vpc_id.",
        'The package cannot serve this deployment: ${join("; ", local.package_problems)}.',
    ],
    "poll": [
        "poll_timeout_s must cover 3 cloud calls of connect_timeout_s + http_timeout_s each.",
        "The poll schedule needs first_poll_s <= max_poll_delay_s < job_timeout_s.",
    ],
    "flush": ["The delay topic (Redis or RabbitMQ) is reached through a VPC: set vpc_id and network_id."],
    "history": [
        'history_writer = "recorder" records into a postgresql:// history_url: set one.',
        "The history recorder reaches the database through a VPC: set vpc_id and network_id, "
        "or history_vpc_id and history_network_id.",
    ],
}
OWNED = re.compile(r'^\$\{each\.key != "(\w+)" \|\| (.+)\}$')


def test_each_precondition_applies_to_its_own_function_only() -> None:
    """On the shared resource a function's precondition starts `each.key != "<function>" ||`: it
    holds for every other function and is the old condition for its own."""
    preconditions = CONFIG.resource("huaweicloud_fgs_function.functions")["lifecycle"][0]["precondition"]
    owned: dict[str, list[str]] = {}
    for precondition in preconditions:
        match = OWNED.match(precondition["condition"])
        assert match, precondition["condition"]
        owned.setdefault(match.group(1), []).append(precondition["error_message"])
        for other in set(CONFIG.locals["function_settings"]) - {match.group(1)}:
            assert Evaluator(REQUIRED, each_key=other)(precondition["condition"]) is True
    assert owned == FUNCTION_PRECONDITIONS
    (dead_letters,) = CONFIG.resource("huaweicloud_fgs_async_invoke_configuration.functions")["lifecycle"]
    (precondition,) = dead_letters["precondition"]
    assert precondition["condition"].startswith('${each.key != "poll" || ')


# Every address the functions, their triggers and async configurations had before they shared one
# resource each, and where moved.tf moves it.
OLD_ADDRESSES = {
    "huaweicloud_fgs_function.detach": 'huaweicloud_fgs_function.functions["detach"]',
    "huaweicloud_fgs_function.poll": 'huaweicloud_fgs_function.functions["poll"]',
    "huaweicloud_fgs_function.flush": 'huaweicloud_fgs_function.functions["flush"]',
    "huaweicloud_fgs_function.relay": 'huaweicloud_fgs_function.functions["relay"]',
    "huaweicloud_fgs_function.notify[0]": 'huaweicloud_fgs_function.functions["notify"]',
    "huaweicloud_fgs_function.history[0]": 'huaweicloud_fgs_function.functions["history"]',
    "huaweicloud_fgs_function_trigger.poll_jobs": 'huaweicloud_fgs_function_trigger.smn["poll"]',
    "huaweicloud_fgs_function_trigger.notify_results[0]": 'huaweicloud_fgs_function_trigger.smn["notify"]',
    "huaweicloud_fgs_function_trigger.history_results[0]": 'huaweicloud_fgs_function_trigger.smn["history"]',
    "huaweicloud_fgs_function_trigger.flush_timer": 'huaweicloud_fgs_function_trigger.timer["flush"]',
    "huaweicloud_fgs_function_trigger.relay_timer": 'huaweicloud_fgs_function_trigger.timer["relay"]',
    "huaweicloud_fgs_async_invoke_configuration.detach": (
        'huaweicloud_fgs_async_invoke_configuration.functions["detach"]'
    ),
    "huaweicloud_fgs_async_invoke_configuration.poll": (
        'huaweicloud_fgs_async_invoke_configuration.functions["poll"]'
    ),
    "huaweicloud_fgs_async_invoke_configuration.notify[0]": (
        'huaweicloud_fgs_async_invoke_configuration.functions["notify"]'
    ),
    "huaweicloud_fgs_async_invoke_configuration.history[0]": (
        'huaweicloud_fgs_async_invoke_configuration.functions["history"]'
    ),
}


def test_the_moved_blocks_move_every_old_address() -> None:
    """A deployment made before keeps its functions: each old address has a moved block to an
    instance the new resources can have (its resource exists, its for_each can yield the key),
    so Terraform moves the state instead of destroying one function and creating another."""
    moves = {_strip(block["from"]): _strip(block["to"]) for block in CONFIG.moved}
    assert len(moves) == len(CONFIG.moved)  # one move from each address
    assert moves == OLD_ADDRESSES
    possible = _function_instances_of(set(CONFIG.locals["function_settings"]))
    for name in CONFIG.locals["function_settings"]:  # a function renamed would be replaced
        assert _function(name)["name"] == f"${{var.name_prefix}}-{name}"
    for old, new in moves.items():
        kind, name = old.split("[")[0].split(".")
        assert name not in CONFIG.resources[kind], f"{old} is still declared"
        assert new in possible, f"{old} → {new}: no such instance"

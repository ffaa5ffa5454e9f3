"""The deployment files of infra/ checked without a cluster or a Docker engine, offline: every
Kubernetes manifest against the OpenAPI-derived JSON schemas of a pinned Kubernetes version
(kubernetes-validate bundles them), the production overlay as kustomize would build it, the
compose file against the Compose Specification's schema (as check-jsonschema vendors it), and
what the platform needs of them: probes on /healthz and /readyz, an autoscaler watching every
consumer's queue, least privilege in every pod."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
# The oldest Kubernetes minor still supported upstream when this was written: manifests valid
# there are valid on the newer ones for the kinds used here (apps/v1, autoscaling/v2, policy/v1).
KUBERNETES_VERSION = "1.31"

Resource = dict[str, Any]


def _documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def _key(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


@cache
def base_resources() -> tuple[tuple[Path, Resource], ...]:
    return tuple((BASE / name, doc) for name in _kustomization(BASE)["resources"] for doc in _documents(BASE / name))


def _validate(resource: Resource) -> None:
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path)
        raise AssertionError(f"{_key(resource)} at {where}: {error.message}") from None


# -- kustomize -------------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", [BASE, PRODUCTION], ids=["base", "production"])
def test_kustomizations_reference_files_that_exist(folder):
    kustomization = _kustomization(folder)
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{folder}: {entry} is missing"
    for patch in kustomization.get("patches", []):
        assert (folder / patch["path"]).is_file(), f"{folder}: patch {patch['path']} is missing"


def test_every_manifest_in_base_is_part_of_the_kustomization():
    listed = set(_kustomization(BASE)["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert present == listed


# -- schemas ---------------------------------------------------------------------------------------
def test_every_base_manifest_is_valid_kubernetes():
    names = set()
    for _path, resource in base_resources():
        _validate(resource)
        assert _key(resource) not in names, f"{_key(resource)} is defined twice"
        names.add(_key(resource))


def test_the_validator_catches_a_misspelt_field():
    deployment = copy.deepcopy(next(r for _, r in base_resources() if r["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(AssertionError, match="livenesProbe"):
        _validate(deployment)


def _strategic_merge(base: Any, patch: Any) -> Any:
    """kustomize's strategic merge for what the overlay patches: maps merge, lists of named
    items (containers) merge by name, other values are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _strategic_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i
                                                                  for i in base + patch):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = _strategic_merge(by_name[item["name"]], item) if item["name"] in by_name \
                else item
        return list(by_name.values())
    return patch


def production_resources() -> dict[tuple[str, str], Resource]:
    built = {_key(r): copy.deepcopy(r) for _, r in base_resources()}
    kustomization = _kustomization(PRODUCTION)
    for entry in kustomization["resources"]:
        if (PRODUCTION / entry).is_file():
            for resource in _documents(PRODUCTION / entry):
                built[_key(resource)] = resource
    for patch_file in kustomization["patches"]:
        for patch in _documents(PRODUCTION / patch_file["path"]):
            assert _key(patch) in built, f"{patch_file['path']} patches {_key(patch)}, which base does not define"
            built[_key(patch)] = _strategic_merge(built[_key(patch)], patch)
    return built


def test_the_production_overlay_builds_valid_kubernetes():
    built = production_resources()
    for resource in built.values():
        _validate(resource)
    for resource in built.values():
        if resource["kind"] == "HorizontalPodAutoscaler":
            assert resource["spec"]["minReplicas"] <= resource["spec"]["maxReplicas"], _key(resource)


# -- what the platform needs -----------------------------------------------------------------------
def _deployments() -> list[Resource]:
    return [r for _, r in base_resources() if r["kind"] == "Deployment"]


def _serves_http(deployment: Resource) -> bool:
    return any(c.get("ports") for c in deployment["spec"]["template"]["spec"]["containers"])


def test_web_deployments_probe_healthz_for_liveness_and_readyz_for_readiness():
    web = [d for d in _deployments() if _serves_http(d)]
    assert {d["metadata"]["name"] for d in web} == {f"{s}-web" for s in
                                                   ("identity", "enrichment", "campaigns", "webhooks", "console")}
    for deployment in web:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", deployment["metadata"]["name"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", deployment["metadata"]["name"]
            assert container.get("startupProbe", {"httpGet": {"path": "/healthz"}})["httpGet"]["path"] == "/healthz"


def test_every_pod_runs_unprivileged_with_resources():
    pods = [r["spec"]["template"] for r in _deployments()] + \
           [r["spec"]["template"] for _, r in base_resources() if r["kind"] == "Job"]
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_every_process_of_the_stack_has_a_deployment_running_code_that_exists():
    commands = [" ".join(c["command"]) for d in _deployments() for c in d["spec"]["template"]["spec"]["containers"]]
    for command in commands:
        module = re.search(r"-m ([\w.]+)|(services\.\w+\.app):", command)
        assert module, command
        path = ROOT.joinpath(*(module.group(1) or module.group(2)).split("."))
        assert path.with_suffix(".py").is_file(), f"{command}: no such module"
    for worker in sorted(ROOT.glob("services/*/worker.py")):
        assert any(f"-m services.{worker.parent.name}.worker" in c for c in commands), f"no Deployment runs {worker}"
    from services.campaigns import CHANNELS

    for channel in CHANNELS:
        assert any(c.endswith(f"channel_worker --channels {channel}") for c in commands), f"no pool sends {channel}"


def test_every_consumer_queue_has_a_worker_autoscaler_and_every_watched_queue_exists():
    definitions = json.loads((INFRA / "rabbitmq" / "definitions.json").read_text())
    consumers = {q["name"] for q in definitions["queues"] if not q["name"].endswith((".retry", ".dead"))}
    deployments = {d["metadata"]["name"] for d in _deployments()}
    watched = set()
    for _, hpa in base_resources():
        if hpa["kind"] != "HorizontalPodAutoscaler":
            continue
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "External":
                assert metric["external"]["metric"]["name"] == "rabbitmq_queue_messages_ready"
                watched.add(metric["external"]["metric"]["selector"]["matchLabels"]["queue"])
            else:
                assert metric["resource"]["name"] == "cpu"
    assert watched == consumers


# -- compose ---------------------------------------------------------------------------------------
@cache
def compose_schema() -> dict[str, Any]:
    # The Compose Specification's schema (Apache-2.0, github.com/compose-spec/compose-spec),
    # as vendored by check-jsonschema (its LICENSE.compose-spec beside it).
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return json.loads(text)


def _compose_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_specification():
    document = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert _compose_errors(document) == []
    broken = copy.deepcopy(document)
    broken["services"]["identity"]["helthcheck"] = broken["services"]["identity"].pop("healthcheck")
    assert _compose_errors(broken)  # the schema does catch a misspelt key


def test_the_compose_stack_waits_for_its_dependencies_and_checks_health():
    services = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
    for name, service in services.items():
        if name in {"postgres", "rabbitmq", "migrate", "console"}:
            continue
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert service["environment"]["DATABASE_URL"].startswith(f"postgresql://liaison_{name.split('-')[0]}:"), name
        assert service["environment"]["BUS_QUEUE_TYPE"] == "quorum"
        if "gunicorn" in service["command"]:
            probe = " ".join(service["healthcheck"]["test"])
            assert "healthz" in probe and "readyz" in probe, name
    for worker in sorted(ROOT.glob("services/*/worker.py")):
        assert f"{worker.parent.name}-worker" in services

"""The Kubernetes manifests, validated offline against the Kubernetes schemas.

No cluster runs here: the manifests are checked against the API schemas of a recent
Kubernetes release (kubernetes-validate, strict: unknown fields are errors), the work
pool's job template is rendered with Prefect's own templating and checked as a Job, and
the kustomization lists every file. docs/deployment.md says what was not exercised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prefect.utilities.templating import apply_values

MANIFESTS = Path(__file__).parents[1] / "deployments" / "kubernetes"
KUBERNETES = "1.33"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            found.append(
                (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
            )
    return found


@pytest.mark.parametrize(("where", "document"), _documents(), ids=lambda value: str(value)[:60])
def test_each_manifest_is_valid_kubernetes(where: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_validator_does_fail_on_a_wrong_manifest() -> None:
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(kubernetes_validate.ValidationError, match="selector"):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    typo = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spek": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES, strict=True)


def test_every_workload_runs_unprivileged() -> None:
    for where, document in _documents():
        if document["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        pod = document["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert "limits" in container["resources"], where


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_the_kubernetes_work_pool_template_renders_to_a_valid_job() -> None:
    template = json.loads((MANIFESTS / "work-pool-kubernetes.json").read_text())
    defaults = {
        name: spec["default"]
        for name, spec in template["variables"]["properties"].items()
        if "default" in spec
    }
    job = apply_values(template["job_configuration"]["job_manifest"], defaults)
    kubernetes_validate.validate(job, KUBERNETES, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_the_network_policies_name_pods_that_exist() -> None:
    template = json.loads((MANIFESTS / "work-pool-kubernetes.json").read_text())
    flow_pods = template["variables"]["properties"]["labels"]["default"]
    pods = {flow_pods["app.kubernetes.io/name"]} | {
        document["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for _, document in _documents()
        if document["kind"] in {"Deployment", "StatefulSet"}
    }
    named: set[str] = set()
    for _, document in _documents():
        if document["kind"] != "NetworkPolicy":
            continue
        named.add(document["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
        for rule in document["spec"]["ingress"]:
            for source in rule.get("from", []):
                selector = source["podSelector"]
                named.update(selector.get("matchLabels", {}).values())
                for expression in selector.get("matchExpressions", []):
                    named.update(expression["values"])
    assert named - pods == set(), "network policies name pods no manifest makes"
    # The flow pods carry that label: the job template puts it on the pod, not only the Job.
    assert template["job_configuration"]["job_manifest"]["spec"]["template"]["metadata"] == {
        "labels": "{{ labels }}"
    }

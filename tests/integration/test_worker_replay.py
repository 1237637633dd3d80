"""`rapport dlq show|replay` on the real broker: a dead letter is listed with its reason and
sent back to its source topic, bytes unchanged, once the cause is fixed.

It adds a record to the input topic, so it runs after test_worker_ingest (alphabetical order)."""

from __future__ import annotations

import getpass
import uuid
from pathlib import Path

from schemas.topics import (
    ACCOUNT_EVENTS,
)
from services.runtime.broker import LocalBroker
from services.runtime.dlq import REPLAYED_BY_HEADER, REPLAYED_FROM_HEADER
from tests.integration.stack import (
    dead_letter_of_the_input,
    end_offsets,
    rapport,
    records_since,
    service_env,
)


def test_dead_letters_are_shown_and_replayed_to_their_source(
    topics: LocalBroker, rapport_home: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    service = f"svc-{run}"
    value = dead_letter_of_the_input(topics.bootstrap, service, run)
    env = service_env(topics, rapport_home)

    shown = rapport(env, "dlq", "show", "--topic", ACCOUNT_EVENTS.dlq)
    assert shown.returncode == 0, shown.stderr
    assert service in shown.stdout and "malformed_json" in shown.stdout

    marks = end_offsets(topics.bootstrap, ACCOUNT_EVENTS.name)
    dry = rapport(
        env, "dlq", "replay", "--topic", ACCOUNT_EVENTS.dlq, "--service", service, "--dry-run"
    )
    assert "would replay 1 of" in dry.stdout, dry.stdout + dry.stderr
    assert records_since(topics.bootstrap, ACCOUNT_EVENTS.name, marks) == []

    done = rapport(env, "dlq", "replay", "--topic", ACCOUNT_EVENTS.dlq, "--service", service)
    assert "replayed 1 of" in done.stdout, done.stdout + done.stderr
    (back,) = records_since(topics.bootstrap, ACCOUNT_EVENTS.name, marks)
    assert (back.key, back.value) == (run.encode(), value)
    assert back.headers[REPLAYED_FROM_HEADER].startswith(ACCOUNT_EVENTS.dlq.encode())
    assert back.headers[REPLAYED_BY_HEADER] == getpass.getuser().encode()  # who did it

"""A worker behind on two topics, one agent waiting for the other, catches up on the real broker
(services/runtime/faust_flow.py). As notify restarted after an outage: its derived events wait
for the input's profile facts, and faust let the waiting agent's full buffer stop the input too,
until the wait timed out. Here the wait has no timeout: without the workaround the worker never
commits the end of either topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
from tests.integration.stack import committed_offsets, produce, service_env, worker

# Far more than a stream buffer (4,096) and the batch its agent holds (1,000), and more than one
# fetch of a partition brings (1 MiB: about 15,000 of these records).
FACTS = 30_000
DERIVED = 12_000


def create(bootstrap: str, *names: str) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, 1, 1) for n in names])
        finally:
            await admin.close()

    asyncio.run(run())


def test_an_agent_waiting_for_another_topic_does_not_stop_the_worker(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    facts, derived = f"test.facts.{run}", f"test.derived.{run}"
    create(topics.bootstrap, facts, derived)
    produce(topics.bootstrap, derived, ((None, b"d%05d" % n) for n in range(DERIVED)))
    produce(topics.bootstrap, facts, ((None, b"f%05d" % n) for n in range(FACTS)))
    env = service_env(topics, rapport_home)
    group = RuntimeSettings(instance=env["RAPPORT_INSTANCE"]).app_id("notify")
    app = ["tests.integration.waiting_app", facts, str(FACTS), derived]
    with worker("notify", env, tmp_path, command=app) as running:
        deadline = time.monotonic() + 120
        taken: tuple[int, int] = (0, 0)
        while taken != (FACTS, DERIVED):
            assert running.process.poll() is None, (
                f"worker exited:\n{running.log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, (
                f"after 120 s the worker had committed {taken[0]:,} of {FACTS:,} facts and "
                f"{taken[1]:,} of {DERIVED:,} derived records:\n{running.log.read_text()[-3000:]}"
            )
            time.sleep(1)
            taken = (
                committed_offsets(topics.bootstrap, group, facts).get(0, 0),
                committed_offsets(topics.bootstrap, group, derived).get(0, 0),
            )

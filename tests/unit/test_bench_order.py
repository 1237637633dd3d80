"""The bench measures referral, rewards and notify alone on the topics the whole pipeline left.
A worker alone publishes its outputs again, so none may come before a worker that reads them:
notify, last until 2026-12-06, read referral's and rewards' outputs twice."""

from __future__ import annotations

from schemas.topics import ALL_TOPICS
from services.bench.harness import DOWNSTREAM


def test_no_worker_alone_reads_what_one_measured_before_it_wrote_again() -> None:
    for n, service in enumerate(DOWNSTREAM):
        reads = {t.name for t in ALL_TOPICS if service in t.consumers}
        for earlier in DOWNSTREAM[:n]:
            written = {t.name for t in ALL_TOPICS if earlier in t.producers}
            assert not reads & written, (service, earlier, reads & written)

"""The demo's sample population is deterministic and its invalid share is known exactly."""

from __future__ import annotations

from collections import Counter

from services.runtime.codec import Rejection, decode_account_event
from services.runtime.produce import records_from_lines
from services.simulator.sample import generate


def test_same_seed_same_bytes() -> None:
    assert generate(30, 60, seed=3).lines == generate(30, 60, seed=3).lines
    assert generate(30, 60, seed=3).lines != generate(30, 60, seed=4).lines


def test_codec_agrees_with_what_the_sample_says_is_invalid() -> None:
    sample = generate(60, 90, seed=5, invalid_share=0.02)
    reasons: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for record in records_from_lines(sample.lines):
        result = decode_account_event(record.key, record.value)
        if isinstance(result, Rejection):
            reasons[result.reason.value] += 1
        else:
            accepted[result.event_type] += 1
    assert dict(reasons) == sample.invalid_by_reason
    assert dict(accepted) == sample.valid_by_type
    assert sample.invalid > 0

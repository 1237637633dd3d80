"""deploy/kafka/environments.toml, the one place that says how topics are replicated."""

from __future__ import annotations

import pytest

from services.runtime.kafka_environments import environment, environment_for
from services.runtime.settings import RuntimeSettings


def test_a_cluster_of_three_brokers_or_more_keeps_three_copies_and_writes_with_two() -> None:
    for brokers in (3, 5, 12):
        chosen = environment_for(brokers)
        assert (chosen.name, chosen.replication_factor, chosen.min_insync_replicas) == (
            "cluster",
            3,
            2,
        )


def test_one_or_two_brokers_keep_one_copy() -> None:
    assert environment_for(1).replication_factor == 1
    assert environment_for(2).name == "single-node"


def test_an_unknown_environment_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="single-node, cluster"):
        environment("production")
    with pytest.raises(ValueError, match="unknown Kafka environment 'big'"):
        RuntimeSettings(kafka_environment="big")
    assert RuntimeSettings(kafka_environment="cluster").kafka_environment == "cluster"

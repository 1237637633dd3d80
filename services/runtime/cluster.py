"""A local Kafka cluster of several KRaft nodes on 127.0.0.1, for trying Rapport as it runs on a
bank's replicated cluster: `rapport broker start --nodes 3`.

Each node is broker and controller at once (combined mode: three processes, not six, on a
small machine), with its own data directory, client port and controller port; the controllers
form one quorum, so the cluster keeps working, and keeps its metadata, with one node down.
Topics are replicated as deploy/kafka/environments.toml says for a cluster."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.runtime.broker import BrokerError, BrokerStatus, LocalBroker, new_cluster_id
from services.runtime.kafka_environments import environment_for

# Node n listens for clients on base + STEP * (n - 1) and for its controllers on the port after:
# three nodes from 9092 take 9092-9099, below the services' metrics ports (9100 on).
STEP = 3


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    status: BrokerStatus
    controller: bool


class LocalCluster:
    """`nodes` local KRaft nodes sharing one cluster id, under HOME/cluster-PORT/."""

    def __init__(self, home: Path, port: int = 9092, nodes: int = 3, heap: str = "1g") -> None:
        if nodes < 2:
            raise BrokerError("a cluster has two nodes or more; one node is `rapport broker`")
        self.home = home
        self.port = port
        self.directory = home / f"cluster-{port}"
        self.kafka_environment = environment_for(nodes)
        ports = [port + STEP * n for n in range(nodes)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{p + 1}" for n, p in enumerate(ports))
        self.id_file = self.directory / "cluster.id"
        # Every node is formatted with the same id, kept for the nodes' later starts.
        cluster_id = self.id_file.read_text().strip() if self.id_file.exists() else None
        self.cluster_id = cluster_id or new_cluster_id()
        self.nodes = [
            LocalBroker(
                home,
                port=p,
                heap=heap,
                node_id=n + 1,
                voters=voters,
                directory=self.directory / f"node-{n + 1}",
                kafka_environment=self.kafka_environment,
                cluster_id=self.cluster_id,
            )
            for n, p in enumerate(ports)
        ]

    @staticmethod
    def nodes_made(home: Path, port: int) -> int:
        """How many nodes the cluster made earlier under `home` has (0: none)."""
        return len(list((home / f"cluster-{port}").glob("node-*")))

    @property
    def bootstrap(self) -> str:
        """Every node's host:port, as KAFKA_BOOTSTRAP_SERVERS: clients reach the cluster
        through whichever node is up."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalBroker:
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id}: the cluster has nodes 1-{len(self.nodes)}")
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 120.0) -> list[BrokerStatus]:
        """Start every node that is not running, together, and wait until each answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.id_file.write_text(self.cluster_id)
        launched = [(node, node.launch()) for node in self.nodes]
        deadline = time.monotonic() + timeout
        started = [
            node.status()
            if process is None
            else node.wait_ready(process, max(deadline - time.monotonic(), 1.0))
            for node, process in launched
        ]
        self.wait_registered(max(deadline - time.monotonic(), 1.0))
        return started

    def wait_registered(self, timeout: float) -> None:
        """Wait until the cluster's metadata lists every running node as a broker. A node
        logs that it started before the others learn of it: topics created in that gap are
        sized for fewer brokers (`rapport topics create` picks the environment by the count)."""
        running = {node.node_id for node in self.nodes if node.status().running}

        async def registered(node: LocalBroker) -> set[int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=node.bootstrap)
            try:
                await admin.start()
                described = await admin.describe_cluster()
                return {int(b["node_id"]) for b in described["brokers"]}
            except KafkaError:
                return set()
            finally:
                await admin.close()

        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            # Each node answers from its own copy of the metadata: all must have caught up.
            views = [asyncio.run(registered(self.node(n))) for n in sorted(running)]
            seen = set.intersection(*views) if views else set()
            if running <= seen:
                return
            time.sleep(0.5)
        raise BrokerError(
            f"nodes {sorted(running - seen)} did not join the cluster within {timeout:.0f} s"
        )

    def stop(self) -> int:
        """Stop every node (a clean shutdown each); how many were running."""
        return sum(node.stop() for node in reversed(self.nodes))

    def status(self) -> list[NodeStatus]:
        """Each node, and which one leads the controllers' quorum (the active controller)."""
        leader = self.quorum_leader()
        return [
            NodeStatus(node.node_id, node.status(), node.node_id == leader) for node in self.nodes
        ]

    def quorum_leader(self) -> int | None:
        """The active controller, from the quorum state the running nodes keep on disk (the
        leader of the newest epoch): Kafka's clients are not told which controller leads."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            if not node.status().running:
                continue
            path = node.data_dir / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
            if leader >= 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return best[0] if best else None

"""The local Apache Kafka broker: a KRaft node on 127.0.0.1 that the project starts itself (one
on its own, or one of a local cluster's: services/runtime/cluster.py).

Where no Kafka install is found (KAFKA_HOME, or kafka-server-start.sh on PATH), the broker is
assembled from Maven Central with the machine's Maven and run with its Java 17.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import IO

from services.runtime.kafka_environments import KafkaEnvironment, environment
from services.runtime.osutil import pid_alive, port_open, read_pid

DEPLOY_KAFKA = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
STARTED_MARKER = "Kafka Server started"


class BrokerError(RuntimeError):
    """The local broker could not be assembled, started or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    """What `rapport broker status` reports."""

    running: bool
    pid: int | None
    bootstrap: str
    version: str | None
    directory: Path


def kafka_version() -> str:
    """The Kafka release the project assembles (from deploy/kafka/pom.xml)."""
    pom = (DEPLOY_KAFKA / "pom.xml").read_text(encoding="utf-8")
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    if not match:
        raise BrokerError("deploy/kafka/pom.xml names no kafka.version")
    return match.group(1)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class LocalBroker:
    """One broker instance: its jars, its configuration, its data and its process."""

    def __init__(
        self,
        home: Path,
        port: int = 9092,
        heap: str = "1g",
        scram_user: tuple[str, str] | None = None,
        *,
        node_id: int = 1,
        voters: str | None = None,
        directory: Path | None = None,
        kafka_environment: KafkaEnvironment | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.home = home
        self.port = port
        self.controller_port = port + 1
        self.heap = heap
        # With a SCRAM user, clients must authenticate (SASL_PLAINTEXT, SCRAM-SHA-512) on
        # `port`; the broker talks to itself on a plaintext listener at port + 2.
        self.scram_user = scram_user
        # A cluster's node: its id, every controller of the quorum, the id its nodes share.
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        self.kafka_environment = kafka_environment or environment("single-node")
        self.cluster_id = cluster_id
        self.directory = directory or home / f"broker-{port}"
        self.data_dir = self.directory / "data"
        self.log_file = self.directory / "server.log"
        self.pid_file = self.directory / "broker.pid"
        self.config_file = self.directory / "server.properties"

    @property
    def bootstrap(self) -> str:
        """host:port clients connect to."""
        return f"127.0.0.1:{self.port}"

    # -- install -------------------------------------------------------------------------------

    def classpath(self) -> str:
        """The broker's classpath: an existing install's libs, or the assembled jars."""
        libs = self._installed_libs()
        if libs is None:
            libs = self.assemble()
        return f"{libs}/*"

    def _installed_libs(self) -> Path | None:
        candidates = []
        if os.environ.get("KAFKA_HOME"):
            candidates.append(Path(os.environ["KAFKA_HOME"]) / "libs")
        script = shutil.which("kafka-server-start.sh")
        if script:
            candidates.append(Path(script).resolve().parent.parent / "libs")
        for libs in candidates:
            if any(libs.glob("kafka_2.13-*.jar")):
                return libs
        return None

    def assemble(self) -> Path:
        """Copy kafka_2.13 and its runtime dependencies from Maven Central (once)."""
        version = kafka_version()
        dist = self.home / f"kafka-{version}"
        libs = dist / "lib"
        if (libs / f"kafka_2.13-{version}.jar").exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "no Kafka install found and no Maven to assemble one: install Maven and Java 17 "
                "(Debian: apt-get install maven openjdk-17-jre-headless) or set KAFKA_HOME"
            )
        dist.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY_KAFKA / "pom.xml", dist / "pom.xml")
        staging = dist / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(dist / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"mvn could not assemble Kafka {version}:\n{result.stdout[-3000:]}")
        # Renamed only when complete, so an interrupted download is never mistaken for a dist.
        staging.rename(libs)
        return libs

    # -- process -------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The broker's pid when it is running."""
        return read_pid(self.pid_file)

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        template = Template((DEPLOY_KAFKA / "server.properties.template").read_text())
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        if self.scram_user is None:
            listeners = {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},{controller}",
                "advertised_listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "inter_broker_listener": "PLAINTEXT",
                "protocol_map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "security": "",
            }
        else:
            internal = f"INTERNAL://127.0.0.1:{self.port + 2}"
            listeners = {
                "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},{internal},{controller}",
                "advertised_listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},{internal}",
                "inter_broker_listener": "INTERNAL",
                "protocol_map": (
                    "SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
                ),
                "security": "sasl.enabled.mechanisms=SCRAM-SHA-512\n"
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            }
        self.config_file.write_text(
            template.substitute(
                node_id=self.node_id,
                voters=self.voters,
                data_dir=self.data_dir,
                replication_factor=self.kafka_environment.replication_factor,
                min_insync_replicas=self.kafka_environment.min_insync_replicas,
                **listeners,
            )
        )

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "no java on PATH: Kafka needs Java 17 (apt-get install openjdk-17-jre-headless)"
            )
        return java

    def _format_storage(self, java: str, classpath: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        kraft_id = self.cluster_id or new_cluster_id()
        result = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                f"-Dlog4j.configuration=file:{DEPLOY_KAFKA / 'log4j.properties'}",
                "kafka.tools.StorageTool",
                "format",
                # One token: a random id may begin with "-", which would read as an option.
                f"--cluster-id={kraft_id}",
                f"--config={self.config_file}",
                *(
                    [
                        "--add-scram",
                        "SCRAM-SHA-512=[name={},password={}]".format(*self.scram_user),
                    ]
                    if self.scram_user
                    else []
                ),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-2000:]
            raise BrokerError(f"formatting {self.data_dir} failed:\n{output}")

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker unless it runs already, and wait until it answers."""
        process = self.launch()
        return self.status() if process is None else self.wait_ready(process, timeout)

    def launch(self) -> subprocess.Popen[bytes] | None:
        """Start the broker's process without waiting for it (None: it runs already). A
        cluster's nodes are launched together: none is ready before a majority of the
        controllers is up."""
        if self.pid() is not None and port_open("127.0.0.1", self.port):
            return None
        if port_open("127.0.0.1", self.port):
            raise BrokerError(
                f"port {self.port} is taken by another process; stop it or set RAPPORT_BROKER_PORT"
            )
        java = self._java()
        classpath = self.classpath()
        self._write_config()
        self._format_storage(java, classpath)
        if self.log_file.exists():
            # A fresh log per run: readiness and version are read from what this run wrote.
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with self.log_file.open("ab") as log:
            process = self._spawn(java, classpath, log)
        self.pid_file.write_text(str(process.pid))
        return process

    def wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> BrokerStatus:
        """Wait until the launched broker answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {process.returncode}; see {self.log_file}:\n"
                    + self._log_tail()
                )
            if port_open("127.0.0.1", self.port) and STARTED_MARKER in self._log_tail(400):
                return self.status()
            time.sleep(0.25)
        raise BrokerError(f"the broker did not answer within {timeout:.0f} s; see {self.log_file}")

    def _spawn(self, java: str, classpath: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                "-Xms256m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{DEPLOY_KAFKA / 'log4j.properties'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(self.config_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI that started it
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0, kill: bool = False) -> bool:
        """Shut the broker down cleanly (SIGTERM, then SIGKILL after `timeout`), or with
        `kill` at once (SIGKILL: no controlled shutdown, as when its machine fails)."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def version(self) -> str | None:
        """The Apache Kafka version the running broker reported when it started."""
        versions = re.findall(r"Kafka version: (\S+)", self._log_tail(2000))
        return versions[-1] if versions else None

    def status(self) -> BrokerStatus:
        """Whether it runs, where, and which Kafka version."""
        pid = self.pid()
        running = pid is not None and port_open("127.0.0.1", self.port)
        return BrokerStatus(
            running=running,
            pid=pid,
            bootstrap=self.bootstrap,
            version=self.version() if running else None,
            directory=self.directory,
        )

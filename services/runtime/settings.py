"""Settings every service shares; each service adds its own rule settings with its own prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.account_events import InstitutionCodes
from services.runtime.kafka_environments import environment as named_kafka_environment

SERVICE_NAMES = ("lifecycle", "referral", "rewards", "notify")
# Every HTTP app `rapport api` serves: the services' APIs and the workbench's pages (port base +
# its position: the workbench on the base port itself, 8100 by default).
API_NAMES = ("workbench", *SERVICE_NAMES)
# Where a worker's tables live: in memory, or in RocksDB on local disk (runtime.app.create_app).
TableStore = Literal["memory", "rocksdb"]


def _code_list(value: object) -> object:
    # "CODE1,CODE2" from the environment; a list or set from code.
    return value.split(",") if isinstance(value, str) else value


# Institution codes, comma-separated in the environment. Lifecycle and referral both read the
# same two variables (unprefixed: they describe the bank, not a service); the second name of
# the home codes is the one each service had before several codes were allowed.
BankCodes = Annotated[InstitutionCodes, NoDecode, BeforeValidator(_code_list)]


def home_bank_codes_env(service: str) -> AliasChoices:
    """Where a service's settings find the bank's own institution codes."""
    return AliasChoices(
        "RAPPORT_HOME_BANK_CODES", f"RAPPORT_{service.upper()}_OWN_BANK_CODE", "home_bank_codes"
    )


COMPETITOR_BANK_CODES_ENV = AliasChoices("RAPPORT_COMPETITOR_BANK_CODES", "competitor_bank_codes")


def _default_home() -> Path:
    return Path.home() / ".cache" / "rapport"


def _known_environment(name: str | None) -> str | None:
    if name:
        named_kafka_environment(name)  # a ValueError naming the known ones
    return name or None


class RuntimeSettings(BaseSettings):
    """Where the broker and the database are, where local state lives, which ports to use."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore", frozen=True)

    # The two names operators already know win over the prefixed ones.
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RAPPORT_KAFKA_BOOTSTRAP_SERVERS"),
    )
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "RAPPORT_DATABASE_URL")
    )
    home: Path = Field(default_factory=_default_home)
    # The workers' local table stores (HOME/state by default). Two processes of one service on
    # one host with RocksDB stores need one each: a store is locked by the process using it.
    state_dir: Path | None = None
    environment: str = "development"
    topic_partitions: int = Field(6, ge=1, le=1000)
    # How topics are replicated: an environment of deploy/kafka/environments.toml
    # ("single-node", "cluster"); by default the one the cluster's number of brokers fits.
    kafka_environment: Annotated[str | None, BeforeValidator(_known_environment)] = None
    # Appended to consumer-group and app ids, so two stacks (or two test runs) on one cluster
    # keep separate offsets and state.
    instance: str = Field("", pattern=r"^[a-z0-9\-]{0,32}$")
    # How long the group waits for a worker that stopped answering (crashed, paused) before its
    # partitions move: shorter fails over faster, longer tolerates long pauses. Kafka's default.
    consumer_session_timeout_seconds: float = Field(45.0, ge=6.0, le=1800.0)
    # How long a worker's producer waits for more records before it sends a request: records
    # sent one by one (a batch's changelog writes) then share requests instead of each making
    # its own. Adds at most this much to an output's latency.
    producer_linger_ms: float = Field(5.0, ge=0.0, le=1000.0)
    # How often a worker commits the offsets it has handled. faust's default is 2.8 s: a
    # worker's group then lagged its work by 1.4 s on average, which notify waits out before
    # it reads a lead's tier (the lifecycle group's commits), and a crash redid that much.
    # A commit is one request, after a flush of the producer (docs/architecture.md).
    commit_interval_seconds: float = Field(0.5, gt=0.0, le=60.0)
    # An input partition that its worker has taken to its end and that brought no record for
    # this long (wall clock) is idle: it stops holding back the decisions that wait for every
    # partition's event time (referral's leads and referrals, lifecycle's time rules) until
    # records come again (services/runtime/idle.py).
    idle_partition_seconds: float = Field(30.0, ge=0.5, le=86400.0)
    log_level: str = "info"
    # Workers log one JSON object per line ("json"), or faust's usual text ("text").
    log_format: Literal["json", "text"] = "json"
    metrics_host: str = "127.0.0.1"
    metrics_port_base: int = Field(9100, ge=1024, le=65000)
    api_host: str = "127.0.0.1"
    api_port_base: int = Field(8100, ge=1024, le=65000)
    # The broker this project starts itself (ignored when KAFKA_BOOTSTRAP_SERVERS names another).
    broker_port: int = Field(9092, ge=1024, le=65000)
    broker_heap: str = "1g"

    @property
    def bootstrap_list(self) -> list[str]:
        """Bootstrap servers as host:port strings."""
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file under the home directory."""
        return self.database_url or f"sqlite:///{self.home / 'rapport.db'}"

    def datadir(self, service: str) -> Path:
        """A worker's local state directory (faust's datadir): its tables' stores."""
        return (self.state_dir or self.home / "state") / self.app_id(service)

    def app_id(self, service: str) -> str:
        """Faust app id, which is also the consumer group and the changelog topic prefix."""
        return f"rapport-{service}" + (f"-{self.instance}" if self.instance else "")

    def service_index(self, service: str) -> int:
        """1-based position of a service, used to derive its default ports."""
        return SERVICE_NAMES.index(service) + 1

    def metrics_port(self, service: str) -> int:
        """Port of a worker's /metrics endpoint."""
        return self.metrics_port_base + self.service_index(service)

    def api_port(self, service: str) -> int:
        """Port of a service's HTTP API (or of the workbench)."""
        return self.api_port_base + API_NAMES.index(service)


@lru_cache
def get_settings() -> RuntimeSettings:
    """Settings read once from the environment."""
    return RuntimeSettings()

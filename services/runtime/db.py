"""Database access: one engine per process, sessions committed at the boundary, Alembic for
every schema change. SQLite file by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Engine,
    String,
    Table,
    any_,
    event,
    insert,
    literal,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite hands back naive ones; all we store is UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """The process's engine for a database URL."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets the API read while a worker writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode this survives any crash of the process (SIGKILL included); only a
            # power cut can lose the last commits. PostgreSQL is the production database.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@lru_cache(maxsize=8)
def _serialising_sqlite_engine(url: str) -> Engine:
    get_engine(url)  # creates the file's directory
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # pysqlite's own BEGIN handling is turned off so that ours is the one that runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        # Take the write lock at the start, so that what the transaction reads cannot change
        # before it writes (a deferred transaction would fail with SQLITE_BUSY instead).
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def serialised_session(url: str, lock: str) -> Iterator[Session]:
    """A session whose transaction runs alone among those taking the same `lock`: it reads and
    writes as if no other ran. SQLite takes its database write lock at BEGIN; PostgreSQL takes
    a transaction-scoped advisory lock named by `lock`. Committed at the end, rolled back on
    error, like `session_scope`."""
    url = normalise_url(url)
    engine = _serialising_sqlite_engine(url) if url.startswith("sqlite") else get_engine(url)
    with Session(engine) as session:
        try:
            if not url.startswith("sqlite"):
                session.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": lock}
                )
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed when the block ends without error, rolled back otherwise."""
    with Session(get_engine(url)) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database schema to `revision`."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The schema revision the database is at (None before the first migration)."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(url: str) -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def check_ready(url: str) -> str | None:
    """None when the database answers and is migrated; otherwise what is wrong."""
    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(url)
    except Exception as exc:
        return f"database unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    head = head_revision(url)
    if current != head:
        return f"database schema at {current}, code expects {head}: run `rapport db upgrade`"
    return None


def among(session: Session, column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """`column IN (values)`, on PostgreSQL as `column = ANY(array)`: one parameter, however many
    values. An IN list is a placeholder per value, and psycopg converts a query that long again
    at every call (its query cache keeps short ones only): for a batch's few hundred customers
    that conversion had been a tenth of notify's transaction (docs/benchmarks.md, 2026-12-07,
    evening)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(String)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert the rows in the session's transaction: on PostgreSQL by `COPY`, one command for
    them all, elsewhere as one multi-row statement. Every row has the keys of the first (the
    columns given; the others take their defaults). A batch's hundreds of rows went by
    pipelined INSERTs, a third of notify's transaction (docs/benchmarks.md, 2026-12-07,
    evening). JSON columns are sent as their text."""
    if not rows:
        return
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError(f"rows for {table.name} with different columns: insert them apart")
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    # (name, is JSON) of the columns given, in the table's order.
    fields = [(c.name, isinstance(c.type, JSON)) for c in table.columns if c.name in rows[0]]
    quote = session.get_bind().dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name, _ in fields)
    connection = session.connection().connection.driver_connection
    with (
        connection.cursor() as cursor,  # type: ignore[union-attr]
        cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            values = [(row[name], json) for name, json in fields]
            copy.write_row(
                [orjson.dumps(v).decode() if json and v is not None else v for v, json in values]
            )


def _insert(engine: Engine, table: Any) -> Any:
    """An INSERT that can say what to do on a conflict, in the engine's dialect."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def upsert(
    url: str,
    table: Any,
    rows: list[dict[str, Any]],
    key: str,
    newer: str,
    keep: tuple[str, ...] = (),
) -> None:
    """Insert rows, or update the existing row of the same `key` when the new row's `newer`
    column is greater: writes may race or repeat (partitions move between workers, a restarted
    worker writes again), and an older row must never overwrite a newer one. Columns in `keep`
    keep the value the row was inserted with."""
    if not rows:
        return
    engine = get_engine(url)
    statement = _insert(engine, table)
    statement = statement.on_conflict_do_update(
        index_elements=[key],
        set_={
            c.name: statement.excluded[c.name]
            for c in table.columns
            if c.name != key and c.name not in keep
        },
        where=table.c[newer] < statement.excluded[newer],
    )
    with engine.begin() as connection:
        connection.execute(statement, rows)


def insert_missing(url: str, table: Any, rows: list[dict[str, Any]], key: str) -> None:
    """Insert the rows whose `key` is not in the table yet, in one transaction: a projection
    of a topic taken at least once stores each record once."""
    if not rows:
        return
    engine = get_engine(url)
    statement = _insert(engine, table).on_conflict_do_nothing(index_elements=[key])
    with engine.begin() as connection:
        connection.execute(statement, rows)

"""The service's persistence layer: engine setup, schema migrations and JWT replay protection.

Why a database at all: a CDS Hooks service usually runs as several gunicorn workers, often on
several replicas. Replay protection for the EHR's signed JWTs only works if a ``jti`` seen by any
worker is refused by every other one, so the "already used" set must live in storage that all of
them share. SQLite (the default, one file in the data directory) covers one host with many
worker processes; PostgreSQL covers several replicas.

Replay protection runs on every authenticated call, so :meth:`SqlReplayGuard.remember` is one
round trip: one ``INSERT ... ON CONFLICT ... RETURNING`` and its commit. SQLite runs with
``synchronous = NORMAL`` (see :func:`create_store_engine` for why that is safe for what this
database holds). While the database cannot be reached, :mod:`service.replay_fallback` decides
in each process's memory and writes what it accepted here once the database is back.

The schema is owned by Alembic migrations shipped inside the package (``service/migrations``),
so :func:`migrate` can bring any database to the current schema at startup without an
``alembic.ini`` and without a separate deployment step.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Column,
    Double,
    Engine,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter

__all__ = [
    "MIGRATIONS_DIR",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SqlReplayGuard",
    "check_ids",
    "create_store_engine",
    "default_database_url",
    "metadata",
    "migrate",
    "used_jwt_ids",
]

log = logging.getLogger(__name__)

#: Where the Alembic environment and revisions live; shipped as package data.
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

#: How long a SQLite writer waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000

# Key of the PostgreSQL advisory lock that serialises concurrent migrations: the ASCII bytes of
# "epidural" read as a signed 64-bit integer (fits: the first byte is below 0x80).
_PG_MIGRATION_LOCK_KEY = int.from_bytes(b"epidural", "big", signed=True)

_ISS_MAX = 512
_JTI_MAX = 256

#: The application's view of the schema. It must match what the migrations create; it is the
#: ``target_metadata`` for ``alembic revision --autogenerate``.
metadata = MetaData()

used_jwt_ids = Table(
    "used_jwt_ids",
    metadata,
    Column("iss", String(_ISS_MAX), nullable=False),
    Column("jti", String(_JTI_MAX), nullable=False),
    Column("expires_at", Double(), nullable=False),
    PrimaryKeyConstraint("iss", "jti", name="pk_used_jwt_ids"),
    Index("ix_used_jwt_ids_expires_at", "expires_at"),
)


def default_database_url(data_dir: Path) -> str:
    """The SQLite URL used when no database is configured: one file in ``data_dir``.

    SQLite needs no server, so a single-host deployment gets cross-process replay protection
    out of the box. The directory must exist; SQLite creates the file on first connect.
    """
    return f"sqlite:///{Path(data_dir)}/epidural-cds.sqlite3"


#: Seconds a PostgreSQL connection attempt may take before it fails (startup must not hang).
DEFAULT_CONNECT_TIMEOUT_S = 3
#: Connections each process keeps open: a sync gunicorn worker's request thread and card writer
#: each hold one (service/outcomes), and the replay guard and feedback borrow a third.
DEFAULT_POOL_SIZE = 3


def create_store_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
) -> Engine:
    """Create an engine configured for safe use by many processes at once.

    SQLite: every connection gets WAL journaling (readers never block the writer), a 5 s busy
    timeout (concurrent writers wait for the lock instead of failing with "database is
    locked"), enforced foreign keys (off by default in SQLite) and ``synchronous = NORMAL``.

    Why ``NORMAL`` rather than the default ``FULL``: in WAL mode, ``FULL`` makes every commit
    wait for an fsync of the log, and a commit happens on every authenticated call (the replay
    row). With ``NORMAL`` the log is synced at checkpoints only. The database stays consistent
    either way, and a commit is still durable against a crash or kill of the *process* (it is in
    the operating system's cache, and every worker process sees it at once, which is what replay
    protection between workers relies on). Only a power loss or an operating-system crash can
    lose the last commits. What could be lost is then a few replay rows of tokens accepted just
    before the host went down; to replay one of those an attacker would need to have captured the
    token and to present it after the host is back, within the token's remaining lifetime (at
    most an hour), which is already the exposure of every service that keeps replay state in
    memory. The database holds nothing else that needs to survive a power cut (the schema
    version is re-applied by :func:`migrate` at start-up). PostgreSQL keeps its own durability
    settings.

    PostgreSQL: ``postgresql://`` (and the legacy ``postgres://``) URLs carry no driver, and
    SQLAlchemy would then pick psycopg2, which we do not ship; they are mapped to psycopg 3
    (``postgresql+psycopg://``). ``pool_pre_ping`` drops connections that a database restart
    or failover closed while they sat in the pool, instead of failing a request with them.
    Every gunicorn worker is a process with its own pool, so the pool is small (``pool_size``
    per process, at most one more on overflow): ``workers x (pool_size + 1)`` must stay below the
    server's ``max_connections``. ``connect_timeout_s`` bounds a connection attempt to a dead or
    unreachable server, and ``pool_timeout`` bounds the wait for a free pooled connection, so
    neither startup nor a hook call hangs on the store.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")

    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _configure_sqlite_connection)
        return engine
    return create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=1,
        pool_timeout=connect_timeout_s,
        connect_args={"connect_timeout": connect_timeout_s},
    )


def _configure_sqlite_connection(
    dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry
) -> None:
    # The busy timeout goes first so that every later statement waits for other processes' locks.
    # PRAGMAs do not open a transaction in the sqlite3 module, so each takes effect at once.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _enable_wal(cursor)
        # Per connection, not stored in the file. See create_store_engine for why NORMAL is safe.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _enable_wal(cursor: DBAPICursor) -> None:
    # WAL mode is stored in the database file, so normally only the very first connection ever
    # has to switch. That switch needs an exclusive lock and SQLite does NOT wait for it with
    # the busy handler: when several workers open a brand-new database at once, all but one get
    # "database is locked" at once. So poll, up to the busy timeout, until one of them has
    # switched the file (or we do).
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is not None and str(row[0]).lower() in ("wal", "memory"):
            return  # "memory": in-memory databases cannot use WAL and need no locking
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _alembic_config() -> Config:
    # Built in code so that no alembic.ini has to be found (or shipped) at runtime.
    config = Config()
    # Config values go through ConfigParser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest schema; a no-op when it is already current.

    Every worker process may call this at startup, at the same time: the whole upgrade runs in
    one transaction that first takes an exclusive lock (a transaction-scoped advisory lock on
    PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, which waits up to the busy timeout), so exactly
    one process applies each revision and the others then find the schema current. A failed
    upgrade rolls back as a whole (DDL is transactional on both backends).
    """
    config = _alembic_config()
    with engine.connect() as connection:
        dialect = connection.dialect.name
        if dialect == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
            )
        elif dialect == "sqlite":
            # The sqlite3 module would otherwise run DDL outside any transaction, letting two
            # processes both see "no version table" and race to create it.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        # env.py picks this connection up; as it is already in a transaction, Alembic leaves
        # committing to us.
        config.attributes["connection"] = connection
        # "heads": revisions developed side by side (each with down_revision "0001") are all
        # applied, before and after a merge revision joins them.
        command.upgrade(config, "heads")
        connection.commit()


class SqlReplayGuard:
    """Remembers used JWT IDs in the shared database so that each ``(iss, jti)`` is accepted once.

    A row is kept until its ``expires_at``; after that the token itself is no longer valid, so
    the row is dead weight: it is deleted by a periodic purge, and until then it may be replaced
    by a new token that reuses the ID. Pass the token's ``exp`` plus any clock-skew leeway the
    verifier allows, so that a row never expires while its token could still be accepted.

    Thread-safe; each process (or replica) creates its own guard on its own engine, and the
    database's primary key decides between them.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        purge_every: int = 500,
    ) -> None:
        """Prepare the guard; the schema must already exist (see :func:`migrate`).

        ``clock`` returns the current epoch seconds (injectable for tests); ``purge_every`` is
        how many calls of :meth:`remember` pass between purges of expired rows. Opens no
        connection: gunicorn forks the workers after this, and each opens its own.
        """
        if purge_every < 1:
            raise ValueError("purge_every must be at least 1")
        self._engine = engine
        self._clock = clock
        self._purge_every = purge_every
        self._insert = _claim_statement(engine.dialect.name)
        self._lock = threading.Lock()
        self._since_purge = 0

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record ``(iss, jti)`` as used; return False if it was already used (a replay).

        One atomic statement decides: ``INSERT`` on the primary key ``(iss, jti)``, where a
        conflict with a row that has not expired means replay. A conflicting row that has
        expired is overwritten, so expired rows are never trusted even before the purge.
        Raises ValueError for IDs longer than the columns hold (:func:`check_ids`).
        """
        check_ids(iss, jti)
        now = self._clock()
        with self._engine.begin() as connection:
            row = connection.execute(
                self._insert,
                {"iss": iss, "jti": jti, "expires_at": float(expires_at), "now": now},
            ).first()
        claimed = row is not None
        if self._purge_due():
            try:
                self.purge()
            except SQLAlchemyError:
                # Correctness never depends on the purge (expired rows are replaced anyway),
                # so a failed purge must not turn an accepted token into an error.
                log.warning("purging expired JWT IDs failed; will retry later", exc_info=True)
        return claimed

    def release(self, iss: str, jti: str) -> None:
        """Forget ``(iss, jti)``: its token may be accepted once more (until it expires).

        Only for a call that was authenticated and then took no effect (see
        :meth:`service.replay_fallback.FallbackReplayGuard.release`).
        """
        with self._engine.begin() as connection:
            connection.execute(
                used_jwt_ids.delete().where(used_jwt_ids.c.iss == iss, used_jwt_ids.c.jti == jti)
            )

    def purge(self) -> int:
        """Delete every expired row now and return how many were deleted."""
        now = self._clock()
        with self._engine.begin() as connection:
            result = connection.execute(
                used_jwt_ids.delete().where(used_jwt_ids.c.expires_at <= now)
            )
        return int(result.rowcount)

    def _purge_due(self) -> bool:
        with self._lock:
            self._since_purge += 1
            if self._since_purge >= self._purge_every:
                self._since_purge = 0
                return True
            return False


def check_ids(iss: str, jti: str) -> None:
    """Raise ValueError for IDs longer than the replay table's columns hold.

    Rather than truncating them, which could make two distinct IDs collide, or failing only on
    PostgreSQL (SQLite does not enforce string lengths).
    """
    if len(iss) > _ISS_MAX or len(jti) > _JTI_MAX:
        raise ValueError(f"iss longer than {_ISS_MAX} or jti longer than {_JTI_MAX} characters")


def _claim_statement(dialect: str) -> Insert:
    # INSERT ... ON CONFLICT (iss, jti) DO UPDATE ... WHERE <existing row expired> RETURNING:
    # a row comes back only if the ID was new or its old row had expired. Under concurrency the
    # primary key serialises the claimants (PostgreSQL makes the second wait for the first to
    # commit, SQLite has one writer at a time), so exactly one of them gets a row back.
    values: dict[str, BindParameter[Any]] = {
        "iss": bindparam("iss"),
        "jti": bindparam("jti"),
        "expires_at": bindparam("expires_at"),
    }
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(used_jwt_ids).values(values)
        return pg_stmt.on_conflict_do_update(
            index_elements=[used_jwt_ids.c.iss, used_jwt_ids.c.jti],
            set_={"expires_at": pg_stmt.excluded.expires_at},
            where=used_jwt_ids.c.expires_at <= bindparam("now"),
        ).returning(used_jwt_ids.c.jti)
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(used_jwt_ids).values(values)
        return lite_stmt.on_conflict_do_update(
            index_elements=[used_jwt_ids.c.iss, used_jwt_ids.c.jti],
            set_={"expires_at": lite_stmt.excluded.expires_at},
            where=used_jwt_ids.c.expires_at <= bindparam("now"),
        ).returning(used_jwt_ids.c.jti)
    raise ValueError(f"SqlReplayGuard supports SQLite and PostgreSQL, not {dialect!r}")

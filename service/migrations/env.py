"""Alembic environment for the epidural-cds store.

Why it is this small: the service migrates itself at startup through
:func:`service.store.migrate`, which opens the connection, takes the cross-process migration
lock and hands the connection over in ``config.attributes["connection"]``; this file then only
runs the revisions on it, inside the caller's transaction.

For ad-hoc use with the ``alembic`` command line (e.g. ``alembic revision --autogenerate``),
an ini file that sets ``script_location = service/migrations`` and ``sqlalchemy.url`` works
too; the URL then goes through :func:`service.store.create_store_engine` like the service's.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import service.audit_store  # noqa: F401 - registers audit_records in the metadata
from service.outcomes import tables as _outcome_tables  # noqa: F401 - registers the tables
from service.store import create_store_engine, metadata

config = context.config


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode makes autogenerate emit copy-and-move.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database: call service.store.migrate(engine), or set sqlalchemy.url in the ini"
        )
    return url


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (``alembic upgrade --sql``) without connecting."""
    context.configure(
        url=_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection if one was given, else on a new one from the ini URL."""
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_on(connection)
        return
    engine = create_store_engine(_url())
    try:
        with engine.connect() as new_connection:
            _run_on(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

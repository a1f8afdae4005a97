"""``epidural-cds report`` and ``epidural-cds purge``: the outcome store from the command line.

Both open the configured store (``EPIDURAL_CDS_DATABASE_URL`` or the SQLite file in the data
directory) and migrate it first, so they work on a fresh database too.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from service.config import Settings
from service.outcomes import report, report_formats, report_html
from service.outcomes.store import CardStore
from service.store import create_store_engine, default_database_url, migrate

DAY = 86400.0


def add_commands(commands: Any) -> None:
    """Add ``report`` and ``purge`` to the CLI's subparsers."""
    rep = commands.add_parser("report", help="card outcomes per rule from the outcome store")
    rep.add_argument("--since", type=_date, help="only cards issued on or after DATE (YYYY-MM-DD)")
    rep.add_argument("--format", choices=report_formats.FORMATS, default="text")
    rep.add_argument("--output", type=Path, help="write to this file instead of stdout")
    purge = commands.add_parser("purge", help="delete issued cards and feedback past retention")
    purge.add_argument(
        "--older-than",
        type=_days,
        help="age in days (e.g. 400 or 400d); default EPIDURAL_CDS_RETENTION_DAYS",
    )


def _date(value: str) -> float:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _days(value: str) -> float:
    try:
        days = float(value.removesuffix("d"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if days <= 0:
        raise argparse.ArgumentTypeError("give a positive number of days")
    return days


def _engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = default_database_url(settings.data_dir)
    engine = create_store_engine(url, connect_timeout_s=settings.database_connect_timeout)
    migrate(engine)
    return engine


def render(found: report.Report, kind: str) -> str:
    """The report in format ``kind``."""
    if kind == "json":
        return report_formats.as_json(found)
    if kind == "csv":
        return report_formats.as_csv(found)
    if kind == "html":
        return report_html.as_html(found)
    return report_formats.as_text(found)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``report`` or ``purge``; the exit status."""
    engine = _engine(settings)
    try:
        if args.command == "purge":
            days = args.older_than or float(settings.retention_days)
            deleted = CardStore(engine).purge(time.time() - days * DAY)
            summary = ", ".join(f"{table} {n}" for table, n in deleted.items())
            print(f"deleted rows older than {days:g} days: {summary}")
            return 0
        text = render(report.build(engine, args.since), args.format)
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text, encoding="utf-8")
            print(f"report ({args.format}) written to {args.output}")
        return 0
    finally:
        engine.dispose()

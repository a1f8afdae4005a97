"""Run a throwaway PostgreSQL server for tests that must prove behaviour on a real PostgreSQL.

Why a real server: replay protection across replicas rests on PostgreSQL's own semantics
(``INSERT ... ON CONFLICT`` under concurrent transactions, advisory locks around migrations),
which no stand-in reproduces. The server binaries are the distribution's (``initdb``, ``pg_ctl``,
``postgres``); ``scripts/ensure-test-deps`` installs them when they are missing.

Each :class:`PostgresServer` gets a fresh temporary cluster (``fsync=off``, trust
authentication, TCP on 127.0.0.1 only, its unix socket inside the temporary directory) that is
stopped and deleted on exit, so test sessions never share state or leave data behind.

``initdb`` and ``postgres`` refuse to run as root. When the tests run as root (containers, CI
images), the cluster is therefore owned by, and the server runs as, the unprivileged ``nobody``
account (override with ``$EPIDURAL_TEST_PG_USER``): the temporary directory is chowned to it and
the binaries are started with ``subprocess``'s ``user=``/``group=``, which needs neither a new
system account nor PAM (as ``runuser``/``su`` would).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

STARTUP_TIMEOUT_S = 60
_START_ATTEMPTS = 5
_REQUIRED = ("initdb", "pg_ctl", "postgres")
_ENSURE_HINT = (
    "run `scripts/ensure-test-deps` (as root it installs the `postgresql` package with apt-get)"
)


class PostgresNotFoundError(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` of one installation.

    ``initdb`` on ``PATH`` wins (its symlinks are resolved, so the three binaries always come
    from the same version); then the newest ``/usr/lib/postgresql/<version>/bin`` (Debian and
    Ubuntu keep the server binaries off ``PATH``).
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
        candidates.append(Path(on_path).parent)

    def version_key(path: str) -> tuple[int, ...]:
        version = Path(path).parent.name
        return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)

    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True):
        candidates.append(Path(found))
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _REQUIRED):
            return bindir
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under "
        f"/usr/lib/postgresql/*/bin; {_ENSURE_HINT}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A temporary PostgreSQL cluster on 127.0.0.1 with one empty database; a context manager.

    :attr:`url` is ``postgresql://<user>@127.0.0.1:<port>/<dbname>`` (trust auth, no password).
    :meth:`create_database` adds further empty databases, e.g. one per test.
    ``initdb_s`` and ``startup_s`` record how long creating and starting the cluster took.
    """

    def __init__(
        self, *, dbname: str = "epidural_test", startup_timeout_s: int = STARTUP_TIMEOUT_S
    ) -> None:
        self.dbname = dbname
        self._startup_timeout_s = startup_timeout_s
        self._tmp: Path | None = None
        self._bindir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self.user = ""
        self.port = 0
        self.initdb_s = 0.0
        self.startup_s = 0.0

    @property
    def url(self) -> str:
        """The URL of the database created at startup."""
        return self.database_url(self.dbname)

    def database_url(self, dbname: str) -> str:
        """The URL of database ``dbname`` on this server."""
        if not self.port:
            raise RuntimeError("server not started")
        return f"postgresql://{quote(self.user, safe='')}@127.0.0.1:{self.port}/{quote(dbname)}"

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _datadir(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "data"

    @property
    def _logfile(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "postgres.log"

    def start(self) -> None:
        """Create the cluster, start the server and create :attr:`dbname`."""
        self._bindir = find_postgres_bindir()
        self._run_as = _unprivileged_account()
        self.user = self._run_as.pw_name if self._run_as else pwd.getpwuid(os.geteuid()).pw_name
        self._tmp = Path(tempfile.mkdtemp(prefix="epidural-pg-"))
        try:
            if self._run_as is not None:
                os.chown(self._tmp, self._run_as.pw_uid, self._run_as.pw_gid)
            t0 = time.monotonic()
            self._run(
                "initdb",
                "--pgdata",
                str(self._datadir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            )
            self.initdb_s = time.monotonic() - t0
            t1 = time.monotonic()
            self._start_server()
            self.create_database(self.dbname)
            self.startup_s = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise

    def _pg_ctl_start(self) -> None:
        assert self._tmp is not None
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={_quote_for_pg_ctl(str(self._tmp))}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self._datadir),
            "--log",
            str(self._logfile),
            "--wait",
            "--timeout",
            str(self._startup_timeout_s),
            "--silent",
            "-o",
            options,
        )

    def pause(self) -> None:
        """Stop the server but keep its cluster and port: the database is "down" for clients."""
        self._run(
            "pg_ctl", "stop", "--pgdata", str(self._datadir), "--mode", "fast", "--wait",
            "--timeout", "30", "--silent",
        )  # fmt: skip

    def resume(self) -> None:
        """Start a paused server again, on the same port, with its data."""
        self._pg_ctl_start()

    def _start_server(self) -> None:
        assert self._tmp is not None
        for attempt in range(_START_ATTEMPTS):
            # Another process may grab the port between our probe and the server's bind; then
            # postgres fails to start and we retry on another port.
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                return
            except RuntimeError:
                port_taken = "could not bind" in self.log_tail() or "in use" in self.log_tail()
                if not port_taken or attempt == _START_ATTEMPTS - 1:
                    raise

    def create_database(self, dbname: str) -> str:
        """Create an empty database and return its URL."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.database_url(dbname)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server log, for failure messages."""
        if self._tmp is None or not self._logfile.exists():
            return ""
        return "\n".join(self._logfile.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (fast shutdown, SIGKILL as a fallback) and delete the cluster."""
        if self._tmp is None:
            return
        tmp = self._tmp
        try:
            pidfile = self._datadir / "postmaster.pid"
            if pidfile.exists():
                try:
                    self._run(
                        "pg_ctl",
                        "stop",
                        "--pgdata",
                        str(self._datadir),
                        "--mode",
                        "fast",
                        "--wait",
                        "--timeout",
                        "30",
                        "--silent",
                    )
                except (RuntimeError, subprocess.TimeoutExpired):
                    _kill_postmaster(pidfile)
        finally:
            self._tmp = None
            self.port = 0
            shutil.rmtree(tmp, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        assert self._bindir is not None and self._tmp is not None
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs = {
                "user": self._run_as.pw_uid,
                "group": self._run_as.pw_gid,
                "extra_groups": [],
            }
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(HOME=str(self._tmp), LC_ALL="C")
        result = subprocess.run(
            [str(self._bindir / program), *args],
            cwd=self._tmp,  # the unprivileged user may not be able to enter our cwd
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=self._startup_timeout_s + 30,
            check=False,
            **kwargs,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}\n{self.log_tail()}"
            )


def _unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("EPIDURAL_TEST_PG_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(
            f"running as root, PostgreSQL needs an unprivileged account, but {name!r} does not "
            "exist; set $EPIDURAL_TEST_PG_USER to an existing non-root user"
        ) from None


def _quote_for_pg_ctl(value: str) -> str:
    # pg_ctl passes -o through /bin/sh, and postgres then reads the -c value as a word.
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _kill_postmaster(pidfile: Path) -> None:
    # The first line of postmaster.pid is the postmaster's PID; its backends exit on their own
    # once they notice the postmaster is gone.
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)

"""A real, throw-away PostgreSQL server for tests (reusable: import it from any tier).

`PgServer.start()` runs initdb + pg_ctl from the PostgreSQL binaries (default
`/usr/lib/postgresql/15/bin`, override with `POSTGRES_APPS_PG_BINDIR`) in a fresh temporary
directory, on a free loopback port, with scram-sha-256 for every connection (TCP and socket).
initdb refuses to run as root: as root the server runs as an unprivileged OS user
(`POSTGRES_APPS_PG_OS_USER`, default `pgapps-test`, created with useradd if missing) via
`runuser`; as any other user it runs as that user. `stop()` always tears the server down (fast,
then immediate, then SIGKILL of the postmaster) and removes the directory.

`provision_app()` applies the same SQL semantics as the components (`AppDatabase`): a LOGIN role
with NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS and a connection limit, a
database owned by it created from template0, CONNECT and TEMPORARY revoked from PUBLIC.
`harden()` revokes CONNECT and TEMPORARY from PUBLIC on `postgres` and `template1` as the stack
does (`server_hardening.HARDEN_SQL`); a server from `PgServer.start()` is not hardened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"
DEFAULT_OS_USER = "pgapps-test"
ADMIN_USER = "postgres"


class PgServerError(RuntimeError):
    """The test server could not be set up (binaries missing, initdb or start failed)."""


def bindir() -> Path:
    return Path(os.environ.get("POSTGRES_APPS_PG_BINDIR", DEFAULT_BINDIR))


def require_binaries() -> Path:
    """The bin dir, or a PgServerError that says how to get the binaries (tests FAIL, not skip)."""
    d = bindir()
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (d / b).is_file()]
    if missing:
        raise PgServerError(
            f"PostgreSQL binaries missing in {d}: {', '.join(missing)} "
            "(apt-get install postgresql-15, or set POSTGRES_APPS_PG_BINDIR)"
        )
    return d


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


@dataclass
class PgServer:
    """One running server; create with `PgServer.start()`."""

    root: Path
    port: int
    admin_password: str = field(repr=False)
    host: str = "127.0.0.1"
    admin_user: str = ADMIN_USER
    os_user: str | None = None
    bin: Path = field(default_factory=bindir)
    running: bool = False

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, port: int | None = None, attempts: int = 3) -> PgServer:
        pg_bin = require_binaries()
        os_user: str | None = None
        root = Path(tempfile.mkdtemp(prefix="pgapps-it-"))
        if os.geteuid() == 0:
            os_user = os.environ.get("POSTGRES_APPS_PG_OS_USER", DEFAULT_OS_USER)
            pw = _ensure_os_user(os_user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        root.chmod(0o700)
        server = cls(
            root=root,
            port=port or free_port(),
            admin_password=secrets.token_urlsafe(24),
            os_user=os_user,
            bin=pg_bin,
        )
        try:
            server._initdb()
            for attempt in range(attempts):
                try:
                    server._pg_ctl_start()
                    break
                except PgServerError:
                    if port is not None or attempt == attempts - 1:
                        raise
                    server.port = free_port()  # the port was taken between probe and bind
        except BaseException:
            server.stop()
            raise
        return server

    def _cmd(self, argv: list[str]) -> list[str]:
        if self.os_user is None:
            return argv
        return ["runuser", "-u", self.os_user, "--", *argv]

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
            cwd=self.root,
        )

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        res = self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.admin_user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        if res.returncode != 0:
            raise PgServerError(f"initdb failed ({res.returncode}): {res.stderr.strip()}")

    def _pg_ctl_start(self) -> None:
        opts = (
            f"-c port={self.port} -c listen_addresses={self.host} "
            f"-c unix_socket_directories={self.root} -c fsync=off -c max_connections=50"
        )
        res = self._run(
            [
                str(self.bin / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "30",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                opts,
            ]
        )
        if res.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise PgServerError(f"pg_ctl start failed: {res.stderr.strip()} {log[-2000:]}")
        self.running = True

    def restart(self) -> None:
        """Start again after `stop_server()` (same data, same port)."""
        self._pg_ctl_start()

    def stop_server(self) -> None:
        """Stop the postmaster (keeps the data directory): fast, then immediate, then SIGKILL."""
        if not self.datadir.exists():
            self.running = False
            return
        for mode in ("fast", "immediate"):
            res = self._run(
                [
                    str(self.bin / "pg_ctl"),
                    "stop",
                    "-w",
                    "-t",
                    "20",
                    "-m",
                    mode,
                    "-D",
                    str(self.datadir),
                ]
            )
            if res.returncode == 0 or "is the server running" in res.stderr:
                self.running = False
                return
        pidfile = self.datadir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pidfile.read_text().splitlines()[0]), signal.SIGKILL)
            time.sleep(0.5)
        self.running = False

    def stop(self) -> None:
        """Stop the server and remove everything it wrote. Safe to call more than once."""
        try:
            self.stop_server()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- connections -----------------------------------------------------------------------------

    def conninfo(self, *, user: str, password: str, dbname: str = "postgres") -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "dbname": dbname,
            "connect_timeout": 5,
        }

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[Any]:
        """An autocommit psycopg connection as the superuser."""
        import psycopg  # noqa: PLC0415

        conn = psycopg.connect(
            **self.conninfo(user=self.admin_user, password=self.admin_password, dbname=dbname),
            autocommit=True,
        )
        try:
            yield conn
        finally:
            conn.close()

    def execute(self, *statements: Any, dbname: str = "postgres") -> None:
        with self.admin(dbname) as conn:
            for stmt in statements:
                conn.execute(stmt)


@dataclass(frozen=True)
class ProvisionedApp:
    name: str
    role: str
    database: str
    password: str = field(repr=False)


def provision_app(
    server: PgServer, name: str, *, password: str | None = None, connection_limit: int = 20
) -> ProvisionedApp:
    """Role + database + revokes, with the components' SQL semantics."""
    from psycopg import sql  # noqa: PLC0415

    ident = name.replace("-", "_")
    pw = password or secrets.token_urlsafe(32)
    role, db = sql.Identifier(ident), sql.Identifier(ident)
    server.execute(
        sql.SQL(
            "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {}"
        ).format(role, sql.Literal(pw), sql.Literal(connection_limit)),
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(db, role),
        sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
    )
    return ProvisionedApp(name=name, role=ident, database=ident, password=pw)


def harden(server: PgServer) -> None:
    """The server-level part of the stack: PUBLIC loses CONNECT/TEMPORARY on postgres, template1."""
    from postgres_apps.server_hardening import HARDEN_SQL  # noqa: PLC0415

    server.execute(HARDEN_SQL)


def drop_app(server: PgServer, app: ProvisionedApp) -> None:
    from psycopg import sql  # noqa: PLC0415

    server.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(app.database)),
        sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app.role)),
    )

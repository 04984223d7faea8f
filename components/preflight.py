"""Admin pre-flight: is the admin endpoint reachable, are the credentials right, is it usable?

Run once per `pulumi up` (never in `pulumi preview`: see `components/admin.py`) before the
`postgresql` provider gets the admin password, so a wrong admin user or password, an unreachable
endpoint, a server older than 15 or a non-superuser admin stop the run before any role, database,
grant or app Secret is touched.

The same session then reads the server's roles and databases for the unmanaged report
(`components/inventory.py`, one more query): `ServerFacts.objects`.

Pure (testable without a server): `classify`, `failure_message`, `judge`. I/O: `admin_connection`,
`probe_admin` (one psycopg connection, the pre-flight query and the inventory query) and
`run_preflight` (probe, then judge).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import pulumi

from components.config import CONFIG_NAMESPACE
from components.verification.checks import RUNBOOK

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    from components.inventory import ServerObject

RUNBOOK_SECTION: Final = f"{RUNBOOK}#admin-preflight"
"""Where the operator reads what to do (the runbook has an `<a id="admin-preflight">`)."""
MIN_SERVER_VERSION_NUM: Final = 150000
"""PostgreSQL 15: the provider is configured with `expected_version=15`."""
MAX_TESTED_SERVER_VERSION_NUM: Final = 189999
"""PostgreSQL 18.x: newer servers get a warning, not a refusal."""
QUERY: Final = (
    "SELECT current_setting('server_version_num')::int, rolsuper "
    "FROM pg_roles WHERE rolname = current_user"
)
APPLICATION_NAME: Final = "postgres-apps-preflight"

Kind = Literal["unreachable", "auth", "tls", "hba", "database", "other"]

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_K_HOST: Final = f"{CONFIG_NAMESPACE}:postgres.adminHost"
_K_PORT: Final = f"{CONFIG_NAMESPACE}:postgres.adminPort"
_K_USER: Final = f"{CONFIG_NAMESPACE}:postgres.adminUser"
_K_SSL: Final = f"{CONFIG_NAMESPACE}:postgres.adminSslmode"
_K_PASSWORD: Final = f"{CONFIG_NAMESPACE}:adminPassword"


class AdminPreflightError(pulumi.RunError):
    """The admin endpoint cannot be used; the message says which setting to fix."""


@dataclass(frozen=True)
class AdminEndpoint:
    """How the program reaches PostgreSQL as admin (no password: it never goes in here)."""

    host: str
    port: int
    user: str
    sslmode: str
    connect_timeout: int
    password_source: str
    """Where the password came from, for the message: the config secret or `Secret ns/name key`."""
    password_in_config: bool = False
    """True when the password is the config secret `postgres-apps:adminPassword`."""
    dbname: str = "postgres"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerFacts:
    """What the pre-flight query returned."""

    version_num: int
    superuser: bool
    objects: tuple[ServerObject, ...] | None = None
    """Every role and database on the server (`components.inventory.QUERY`), read in the same
    session; None when that read failed (then `objects_error` says why) or was not made."""
    objects_error: str | None = None

    @property
    def version(self) -> str:
        """`server_version_num` as `major.minor` (150008 → 15.8)."""
        return f"{self.version_num // 10000}.{self.version_num % 10000}"


# ---------------------------------------------------------------------------------------------
# Pure
# ---------------------------------------------------------------------------------------------

_PATTERNS: Final[tuple[tuple[Kind, tuple[str, ...]], ...]] = (
    (
        "auth",
        (
            "password authentication failed",
            "no password supplied",
            "authentication failed",
            "does not exist",  # `role "x" does not exist` (trust/ident/peer methods)
        ),
    ),
    ("hba", ("pg_hba.conf",)),
    (
        "unreachable",
        (
            "connection refused",
            "timeout expired",
            "timed out",
            "could not translate host name",
            "failed to resolve host",
            "name or service not known",
            "no route to host",
            "network is unreachable",
            "could not connect",
            "server closed the connection unexpectedly",
            "the database system is starting up",
            "the database system is shutting down",
        ),
    ),
    ("tls", ("ssl", "certificate", "tls")),
)


_QUOTED: Final = re.compile(r"\"([^\"]*)\"|'([^']*)'")
_MIN_QUOTED: Final = 4


def redact_password(text: str, password: str | None, keep: Collection[str] = ()) -> str:
    """`text` without the password: every occurrence of it, and every quoted token of 4 or more
    characters that is part of it (libpq quotes what it echoes) unless it is one of `keep` (the
    host, user and database the messages legitimately quote).

    Deliberately not the gate's fragment redaction (`components.verification.checks.redact`, any
    run of 6 characters shared with the secret): an admin password a person chose, such as
    `not-the-password`, would blank out libpq's own words (`password authentication failed`).
    """
    if not password:
        return text
    text = text.replace(password, "<redacted>")

    def _sub(m: re.Match[str]) -> str:
        token = m.group(1) if m.group(1) is not None else m.group(2)
        if len(token) >= _MIN_QUOTED and token in password and token not in keep:
            return '"<redacted>"'
        return m.group(0)

    return _QUOTED.sub(_sub, text)


def classify(error_text: str) -> Kind:
    """What kind of failure a libpq/psycopg connection error is (first match wins)."""
    low = error_text.lower()
    if 'database "' in low and "does not exist" in low:
        return "database"
    for kind, needles in _PATTERNS:
        if any(n in low for n in needles):
            return kind
    return "other"


def _fix(kind: Kind, ep: AdminEndpoint) -> str:
    if kind == "unreachable":
        if ep.host in _LOOPBACK:
            how = (
                "start the admin port-forward (`kubectl -n data port-forward "
                f"svc/postgres-postgresql {ep.port}:5432`)"
            )
        else:
            how = f"check that {ep.host} is reachable from here (VPN, firewall, DNS)"
        return f"cannot reach PostgreSQL at {ep.address}: {how}, or fix {_K_HOST} / {_K_PORT}"
    if kind == "auth":
        if ep.password_in_config:
            password_fix = (
                f"`pulumi config set --secret {_K_PASSWORD}` with the right one, or "
                f"`pulumi config rm {_K_PASSWORD}` to read the Kubernetes Secret instead"
            )
        else:
            password_fix = (
                f"correct that Secret, or `pulumi config set --secret {_K_PASSWORD}` "
                "(it overrides the Secret)"
            )
        return (
            f'the server refused user "{ep.user}" with the admin password from '
            f"{ep.password_source}: fix {_K_USER}, or the password: {password_fix}"
        )
    if kind == "tls":
        return f"the TLS setting does not match the server: fix {_K_SSL} (now {ep.sslmode!r})"
    if kind == "hba":
        return (
            "the server's pg_hba.conf does not let this client in as this user: allow it on the "
            f"server, or change {_K_SSL} (now {ep.sslmode!r}) / {_K_USER}"
        )
    if kind == "database":
        return f'the admin connection uses database "{ep.dbname}", which must exist'
    return f"check {_K_HOST} / {_K_PORT} / {_K_USER} / {_K_SSL} and the admin password"


def _head(ep: AdminEndpoint) -> str:
    return (
        f'admin pre-flight failed for PostgreSQL at {ep.address} as user "{ep.user}" '
        f"(sslmode {ep.sslmode})"
    )


def _tail() -> str:
    return (
        "No role, database, grant or app Secret was touched (the pre-flight runs before the "
        f"postgresql provider is configured). Runbook: {RUNBOOK_SECTION}"
    )


def failure_message(ep: AdminEndpoint, error_text: str, password: str | None) -> str:
    """The operator's message for a failed connection: endpoint, user, the key to fix, runbook.

    The password (and any fragment of it the driver might echo) is redacted.
    """
    detail = " ".join(error_text.split())  # libpq's multi-line messages on one line
    kind = classify(detail)
    # Only the driver's text could carry the password; the rest is built here from the endpoint
    # and never holds it.
    detail = redact_password(detail, password, keep=(ep.host, ep.user, ep.dbname))
    return f"{_head(ep)}: {detail}\nFix: {_fix(kind, ep)}.\n{_tail()}"


def judge(ep: AdminEndpoint, facts: ServerFacts | None) -> tuple[list[str], list[str]]:
    """Refusals and warnings for a server that accepted the login (pure).

    `facts` is None when `pg_roles` had no row for `current_user` (cannot happen on a sane server).
    """
    if facts is None:
        return [f'user "{ep.user}" logged in but has no row in pg_roles'], []
    problems: list[str] = []
    warnings: list[str] = []
    if facts.version_num < MIN_SERVER_VERSION_NUM:
        problems.append(
            f"the server is PostgreSQL {facts.version} (server_version_num {facts.version_num}); "
            "this program supports 15 to 18 (the postgresql provider is configured for 15 up): "
            f"point {_K_HOST} / {_K_PORT} at a PostgreSQL 15+ server"
        )
    elif facts.version_num > MAX_TESTED_SERVER_VERSION_NUM:
        warnings.append(
            f"admin pre-flight: PostgreSQL {facts.version} at {ep.address} is newer than 18, the "
            "newest this program is tested with"
        )
    if not facts.superuser:
        problems.append(
            f'user "{ep.user}" is not a superuser (rolsuper is false); the postgresql provider is '
            f"configured superuser=True (it creates roles and databases, changes their owners and "
            f"revokes from PUBLIC): set {_K_USER} to a superuser such as postgres, "
            "with its password"
        )
    return problems, warnings


def refusal_message(ep: AdminEndpoint, problems: list[str]) -> str:
    lines = "\n".join(f"- {p}" for p in problems)
    return f"{_head(ep)}: the server is not usable:\n{lines}\n{_tail()}"


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------


def admin_connection(ep: AdminEndpoint, password: str) -> psycopg.Connection[TupleRow]:
    """One autocommit admin connection exactly as the pre-flight makes it (use as a context
    manager). Raises psycopg.Error on failure."""
    import psycopg  # noqa: PLC0415 - only a run that reads the server needs the driver loaded

    return psycopg.connect(
        host=ep.host,
        port=ep.port,
        user=ep.user,
        password=password,
        dbname=ep.dbname,
        sslmode=ep.sslmode,
        connect_timeout=ep.connect_timeout,
        application_name=APPLICATION_NAME,
        passfile=os.devnull,  # check exactly this password, never a ~/.pgpass entry
        autocommit=True,
    )


def probe_admin(ep: AdminEndpoint, password: str) -> ServerFacts | None:
    """Connect once as admin, run `QUERY`, then the inventory query in the same session.

    Raises psycopg.Error when the login or `QUERY` fails; a failed inventory read only leaves
    `objects` None (the unmanaged report then says "not checked")."""
    import psycopg  # noqa: PLC0415

    from components.inventory import read_objects  # noqa: PLC0415 - it imports this module

    objects: tuple[ServerObject, ...] | None = None
    objects_error: str | None = None
    with admin_connection(ep, password) as conn:
        row = conn.execute(QUERY).fetchone()
        if row is not None:
            try:
                objects = read_objects(conn)
            except psycopg.Error as exc:
                objects_error = str(exc)
    if row is None:
        return None
    return ServerFacts(
        version_num=int(row[0]),
        superuser=bool(row[1]),
        objects=objects,
        objects_error=objects_error,
    )


def run_preflight(ep: AdminEndpoint, password: str) -> ServerFacts:
    """Probe the admin endpoint and judge it; raise `AdminPreflightError` with the fix."""
    import psycopg  # noqa: PLC0415

    try:
        facts = probe_admin(ep, password)
    except psycopg.Error as exc:
        raise AdminPreflightError(failure_message(ep, str(exc), password)) from None
    problems, warnings = judge(ep, facts)
    if problems or facts is None:
        raise AdminPreflightError(refusal_message(ep, problems))
    for warning in warnings:
        pulumi.log.warn(warning)
    return facts

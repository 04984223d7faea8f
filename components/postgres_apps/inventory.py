"""What nobody manages: roles and databases on the server that no app of the stack declares.

A role or database made by hand (a leftover `app_user` / `app_test_db` from a manual set-up, an
app removed from config with `deletion: retain`) is invisible to the stack: nothing in the state
points at it. Every `pulumi up` reads the server's roles and databases once, in the admin
pre-flight's session (`postgres_apps/preflight.py` runs `QUERY` right after its own), and reports
what is not declared; `pulumi preview` tries one connection of its own and says "not checked"
when the admin endpoint cannot be reached (a pull-request runner usually cannot).

Not reported: the built-in `pg_*` roles (PostgreSQL refuses to create others with that prefix),
the admin user, the databases `postgres`, `template0`, `template1`, every app's role and database,
and the names in `postgres-apps:unmanaged.ignoreRoles` / `ignoreDatabases`. A role that cannot log
in IS reported: it can still hold privileges and be granted to a role that can (a group role), so
a leftover NOLOGIN role is a leftover all the same; a fresh server has none besides `pg_*`.

The messages (`WARNING_PREFIX`, `NOT_CHECKED_PREFIX`, `NONE_MESSAGE`) are copied in
`tools/preview_comment.py`, which CI runs as a script from the base branch; a unit test pins them.

Pure: `classify`, `warning_message`, `not_checked_message`, `output`. I/O: `read_objects` (one
query on an open connection) and `survey` (connect, read, never raises: for `pulumi preview`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from postgres_apps.preflight import AdminEndpoint, ServerFacts, admin_connection, redact_password
from postgres_apps.settings import CONFIG_NAMESPACE, StackSettings, UnmanagedSettings
from postgres_apps.verification.runbook import RUNBOOK

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

QUERY: Final = (
    "SELECT 'role', rolname FROM pg_catalog.pg_roles "
    "UNION ALL SELECT 'database', datname FROM pg_catalog.pg_database"
)
"""Every role and every database, one statement (catalog reads only, a few dozen rows)."""
SYSTEM_ROLE_PREFIX: Final = "pg_"
SYSTEM_DATABASES: Final = frozenset({"postgres", "template0", "template1"})
RUNBOOK_SECTION: Final = f"{RUNBOOK}#unmanaged"
OUTPUT_NAME: Final = "unmanaged"
"""The stack output: `{checked, roles, databases}` (+ `reason` when not checked)."""
WARNING_PREFIX: Final = "unmanaged on the server (declared by no app of this stack):"
NOT_CHECKED_PREFIX: Final = "unmanaged roles and databases: not checked"
NONE_MESSAGE: Final = "unmanaged roles and databases: none"
"""Logged (info) when the server was read and everything on it is accounted for: a preview's
comment can then tell "checked, nothing" from "not reported"."""
PREVIEW_CONNECT_TIMEOUT_SECONDS: Final = 5
"""A preview that cannot reach the admin endpoint waits at most this long, then says so."""
_K_IGNORE_ROLES: Final = f"{CONFIG_NAMESPACE}:unmanaged.ignoreRoles"
_K_IGNORE_DATABASES: Final = f"{CONFIG_NAMESPACE}:unmanaged.ignoreDatabases"

Kind = Literal["role", "database"]


@dataclass(frozen=True)
class ServerObject:
    """One row of `QUERY`."""

    kind: Kind
    name: str


@dataclass(frozen=True)
class Scope:
    """What the stack accounts for: everything else on the server is reported."""

    roles: frozenset[str]
    """Every app's role."""
    databases: frozenset[str]
    """Every app's database."""
    admin_user: str
    ignore: UnmanagedSettings = dataclasses.field(default_factory=UnmanagedSettings)


def scope_of(settings: StackSettings) -> Scope:
    """The stack config's apps, admin user and ignore-lists."""
    return Scope(
        roles=frozenset(app.role_name for app in settings.apps),
        databases=frozenset(app.database_name for app in settings.apps),
        admin_user=settings.postgres.admin_user,
        ignore=settings.unmanaged,
    )


@dataclass(frozen=True)
class Unmanaged:
    """The report: what is on the server and not declared (sorted), or why it was not read."""

    checked: bool
    roles: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def empty(self) -> bool:
        return not self.roles and not self.databases


# ---------------------------------------------------------------------------------------------
# Pure
# ---------------------------------------------------------------------------------------------


def classify(rows: Iterable[ServerObject], scope: Scope) -> Unmanaged:
    """The rows no app, system name, admin or ignore-list accounts for."""
    roles: set[str] = set()
    databases: set[str] = set()
    for row in rows:
        if row.kind == "role":
            if (
                row.name.startswith(SYSTEM_ROLE_PREFIX)
                or row.name == scope.admin_user
                or row.name in scope.roles
                or row.name in scope.ignore.ignore_roles
            ):
                continue
            roles.add(row.name)
        elif not (
            row.name in SYSTEM_DATABASES
            or row.name in scope.databases
            or row.name in scope.ignore.ignore_databases
        ):
            databases.add(row.name)
    return Unmanaged(checked=True, roles=tuple(sorted(roles)), databases=tuple(sorted(databases)))


def _names(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(n, ensure_ascii=False) for n in names) or "none"


def warning_message(report: Unmanaged) -> str | None:
    """The `pulumi.log.warn` line for a non-empty report (None when there is nothing to say)."""
    if not report.checked or report.empty:
        return None
    return (
        f"{WARNING_PREFIX} roles {_names(report.roles)}; databases {_names(report.databases)}. "
        "Adopt them (`pulumi import`), retire them (pg_dump, DROP), or list them in "
        f"{_K_IGNORE_ROLES} / {_K_IGNORE_DATABASES}. Runbook: {RUNBOOK_SECTION}"
    )


def not_checked_message(reason: str) -> str:
    """The line logged when the server could not be read (the reason is already redacted)."""
    return f"{NOT_CHECKED_PREFIX} ({reason})"


def not_checked(ep: AdminEndpoint, error_text: str, password: str | None, when: str) -> Unmanaged:
    """A report that says why the server was not read; the driver's text without the password."""
    detail = " ".join(error_text.split())
    detail = redact_password(detail, password, keep=(ep.host, ep.user, ep.dbname))
    return Unmanaged(checked=False, reason=f"{when} could not read {ep.address}: {detail}")


def from_preflight(
    facts: ServerFacts, scope: Scope, ep: AdminEndpoint, password: str | None
) -> Unmanaged:
    """The report from what the pre-flight's session read (`up`)."""
    if facts.objects is None:
        return not_checked(
            ep, facts.objects_error or "the pre-flight read no roles", password, "the pre-flight"
        )
    return classify(facts.objects, scope)


def output(report: Unmanaged) -> dict[str, object]:
    """The stack output value (names only: nothing here is secret)."""
    value: dict[str, object] = {
        "checked": report.checked,
        "roles": list(report.roles),
        "databases": list(report.databases),
    }
    if report.reason is not None:
        value["reason"] = report.reason
    return value


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------


def read_objects(conn: psycopg.Connection[TupleRow]) -> tuple[ServerObject, ...]:
    """Run `QUERY` on an open admin connection (the pre-flight's, on `up`)."""
    rows = conn.execute(QUERY).fetchall()
    return tuple(
        ServerObject(kind="role" if row[0] == "role" else "database", name=str(row[1]))
        for row in rows
    )


def survey(ep: AdminEndpoint, password: str, scope: Scope) -> Unmanaged:
    """Connect, read, classify; never raises (a preview must not fail on an unreachable server)."""
    import psycopg  # noqa: PLC0415 - only a run that reads the server needs the driver

    quick = dataclasses.replace(
        ep, connect_timeout=min(ep.connect_timeout, PREVIEW_CONNECT_TIMEOUT_SECONDS)
    )
    try:
        with admin_connection(quick, password) as conn:
            rows = read_objects(conn)
    except (psycopg.Error, OSError) as exc:  # OSError: a socket error libpq did not wrap
        return not_checked(ep, str(exc), password, "the preview")
    return classify(rows, scope)

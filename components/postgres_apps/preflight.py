"""Admin pre-flight: is the admin endpoint reachable, are the credentials right, is it usable?

Run once per `pulumi up` (never in `pulumi preview`: see `postgres_apps/admin.py`) before the
`postgresql` provider gets the admin password, so a wrong admin user or password, an unreachable
endpoint, a server older than 15 or a non-superuser admin stop the run before any role, database,
grant or app Secret is touched.

It also checks the connection budget: the apps' connection limits (`connectionLimit`, default 20)
must all fit in what the server lets roles that are not superusers open, `max_connections -
superuser_reserved_connections - reserved_connections` (the last exists on PostgreSQL 16+). A stack
over it is refused, one over `postgres.connectionBudgetWarnPercent` of it gets a warning. Roles
this stack does not manage (other apps, exporters, retired apps' roles) are not in the sum: the
server cannot say how many connections they will open, so the message tells the operator to
leave room for them (the unmanaged report names them).

The same session then reads the server's roles and databases for the unmanaged report
(`postgres_apps/inventory.py`, one more query): `ServerFacts.objects`.

Pure (testable without a server): `classify`, `failure_message`, `judge`, `judge_budget`. I/O:
`admin_connection`, `probe_admin` (one psycopg connection, the pre-flight query and the inventory
query) and `run_preflight` (probe, then judge).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import pulumi

from postgres_apps.settings import CONFIG_NAMESPACE, StackSettings
from postgres_apps.verification.runbook import RUNBOOK

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    from postgres_apps.inventory import ServerObject

RUNBOOK_SECTION: Final = f"{RUNBOOK}#admin-preflight"
"""Where the operator reads what to do (the runbook has an `<a id="admin-preflight">`)."""
BUDGET_RUNBOOK_SECTION: Final = f"{RUNBOOK}#connection-budget"
BUDGET_OUTPUT_NAME: Final = "connectionBudget"
MIN_SERVER_VERSION_NUM: Final = 150000
"""PostgreSQL 15: the provider is configured with `expected_version=15`."""
MAX_TESTED_SERVER_VERSION_NUM: Final = 189999
"""PostgreSQL 18.x: newer servers get a warning, not a refusal."""
QUERY: Final = (
    "SELECT current_setting('server_version_num')::int, rolsuper, "
    "current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int, "
    # PostgreSQL 16+; missing_ok gives NULL on 15
    "current_setting('reserved_connections', true)::int "
    "FROM pg_roles WHERE rolname = current_user"
)
"""One round trip: the version and superuser questions and the connection settings."""
APPLICATION_NAME: Final = "postgres-apps-preflight"

Kind = Literal["unreachable", "auth", "tls", "hba", "database", "other"]

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_K_HOST: Final = f"{CONFIG_NAMESPACE}:postgres.adminHost"
_K_PORT: Final = f"{CONFIG_NAMESPACE}:postgres.adminPort"
_K_USER: Final = f"{CONFIG_NAMESPACE}:postgres.adminUser"
_K_SSL: Final = f"{CONFIG_NAMESPACE}:postgres.adminSslmode"
_K_PASSWORD: Final = f"{CONFIG_NAMESPACE}:adminPassword"
_K_WARN: Final = f"{CONFIG_NAMESPACE}:postgres.connectionBudgetWarnPercent"


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
class ConnectionSettings:
    """The server's connection slots, as `current_setting` reports them."""

    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int | None
    """None: the server has no such setting (PostgreSQL 15)."""

    @property
    def available(self) -> int:
        """Connections roles that are not superusers may open (PostgreSQL's own arithmetic:
        `max_connections - superuser_reserved_connections - reserved_connections`)."""
        return (
            self.max_connections
            - self.superuser_reserved_connections
            - (self.reserved_connections or 0)
        )

    def describe(self) -> str:
        """The subtraction spelled out, every number with the setting it comes from."""
        text = (
            f"max_connections {self.max_connections} - superuser_reserved_connections "
            f"{self.superuser_reserved_connections}"
        )
        if self.reserved_connections is None:
            return f"{text}; no reserved_connections before PostgreSQL 16"
        return f"{text} - reserved_connections {self.reserved_connections}"


@dataclass(frozen=True)
class AppLimit:
    """One app's share of the budget and the config key that sets it."""

    app: str
    limit: int
    key: str
    """`postgres-apps:apps[<index>].connectionLimit`."""


@dataclass(frozen=True)
class ConnectionBudget:
    """What the stack asks of the server: every app's connection limit (pure config)."""

    apps: tuple[AppLimit, ...]
    warn_percent: int

    @property
    def requested(self) -> int:
        return sum(a.limit for a in self.apps)

    def per_app(self) -> str:
        return ", ".join(f"{a.app} {a.limit}" for a in self.apps) or "no apps"


def _app_limit_key(index: int) -> str:
    return f"{CONFIG_NAMESPACE}:apps[{index}].connectionLimit"


def connection_budget(settings: StackSettings) -> ConnectionBudget:
    """The stack's budget request from its settings (indices as in `postgres-apps:apps`)."""
    return ConnectionBudget(
        apps=tuple(
            AppLimit(app.name, app.connection_limit, _app_limit_key(i))
            for i, app in enumerate(settings.apps)
        ),
        warn_percent=settings.postgres.connection_budget_warn_percent,
    )


@dataclass(frozen=True)
class ServerFacts:
    """What the pre-flight query returned."""

    version_num: int
    superuser: bool
    connections: ConnectionSettings
    objects: tuple[ServerObject, ...] | None = None
    """Every role and database on the server (`postgres_apps.inventory.QUERY`), read in the same
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

    Deliberately not the gate's fragment redaction (`postgres_apps.verification.redaction.redact`,
    any run of 6 characters shared with the secret): an admin password a person chose, such as
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


_LARGEST_NAMED: Final = 3


def _requested(budget: ConnectionBudget) -> str:
    return f"the apps' connection limits add up to {budget.requested} ({budget.per_app()})"


def _allowed(ep: AdminEndpoint, conn: ConnectionSettings) -> str:
    return (
        f"PostgreSQL at {ep.address} allows {conn.available} non-superuser connections "
        f"({conn.describe()})"
    )


def _percent(part: int, whole: int) -> str:
    """`part` as a share of `whole`, one decimal at most (80.4, 81, 100): a floor or a round to
    an integer could print "80%" for a sum that is above a threshold of 80."""
    if whole <= 0:
        return "100"
    return f"{part * 100 / whole:.1f}".removesuffix(".0")


def judge_budget(
    ep: AdminEndpoint, budget: ConnectionBudget, conn: ConnectionSettings
) -> tuple[list[str], list[str]]:
    """Refusals and warnings for the apps' connection limits on this server (pure).

    Refused: the limits cannot all be honoured (sum > available). Warned: within it but above
    `warn_percent` of it (integer arithmetic: exactly at the threshold is no warning).
    """
    requested, available = budget.requested, conn.available
    if requested > available:
        largest = sorted(budget.apps, key=lambda a: -a.limit)[:_LARGEST_NAMED]
        keys = ", ".join(f"{a.key} ({a.app} {a.limit})" for a in largest)
        return [
            f"connection budget exceeded: {_requested(budget)} but {_allowed(ep, conn)}, "
            f"{requested - available} too many. Lower {keys}, or raise max_connections on the "
            "server (it needs a restart; Bitnami chart: primary.extendedConfiguration "
            "`max_connections = <n>`, i.e. postgresql.conf), or lower "
            "superuser_reserved_connections / reserved_connections there. Roles this stack does "
            "not manage are not in the sum: leave room for them. "
            f"Runbook: {BUDGET_RUNBOOK_SECTION}"
        ], []
    if requested * 100 > available * budget.warn_percent:
        return [], [
            f"connection budget: {_requested(budget)}, {_percent(requested, available)}% of the "
            f"{available} non-superuser connections PostgreSQL at {ep.address} allows "
            f"({conn.describe()}), above {_K_WARN} {budget.warn_percent}%. Roles this stack does "
            f"not manage share the {available - requested} left. Runbook: {BUDGET_RUNBOOK_SECTION}"
        ]
    return [], []


def budget_summary(ep: AdminEndpoint, budget: ConnectionBudget, conn: ConnectionSettings) -> str:
    """The info line of a passed budget check (`pulumi up`)."""
    return (
        f"connection budget: {_requested(budget)}; {_allowed(ep, conn)}: "
        f"{_percent(budget.requested, conn.available)}% used by this stack"
    )


def budget_output(budget: ConnectionBudget) -> dict[str, object]:
    """The stack output `connectionBudget`: the config side, the same in preview and up (the
    server's side is checked and logged by the pre-flight in `pulumi up`)."""
    return {
        "requested": budget.requested,
        "perApp": {a.app: a.limit for a in budget.apps},
        "warnPercent": budget.warn_percent,
    }


def preview_budget_line(budget: ConnectionBudget) -> str:
    """The info line of `pulumi preview`, which runs no pre-flight: the config side only."""
    return (
        f"connection budget: {_requested(budget)}; the server's limit is checked by `pulumi up` "
        "(a preview does not run the pre-flight)"
    )


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
    """Connect once as admin, run `QUERY` (version, superuser and connection settings in one
    round trip), then the inventory query in the same session.

    Raises psycopg.Error when the login or `QUERY` fails; a failed inventory read only leaves
    `objects` None (the unmanaged report then says "not checked")."""
    import psycopg  # noqa: PLC0415

    from postgres_apps.inventory import read_objects  # noqa: PLC0415 - it imports this module

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
        connections=ConnectionSettings(
            max_connections=int(row[2]),
            superuser_reserved_connections=int(row[3]),
            reserved_connections=None if row[4] is None else int(row[4]),
        ),
        objects=objects,
        objects_error=objects_error,
    )


def run_preflight(ep: AdminEndpoint, password: str, budget: ConnectionBudget) -> ServerFacts:
    """Probe the admin endpoint, judge it and the stack's connection budget; raise
    `AdminPreflightError` with the fix (every problem at once), log the warnings."""
    import psycopg  # noqa: PLC0415

    try:
        facts = probe_admin(ep, password)
    except psycopg.Error as exc:
        raise AdminPreflightError(failure_message(ep, str(exc), password)) from None
    problems, warnings = judge(ep, facts)
    if facts is None:
        raise AdminPreflightError(refusal_message(ep, problems))
    over, near = judge_budget(ep, budget, facts.connections)
    if problems or over:
        raise AdminPreflightError(refusal_message(ep, problems + over))
    for warning in warnings + near:
        pulumi.log.warn(warning)
    if not near:
        pulumi.log.info(budget_summary(ep, budget, facts.connections))
    return facts

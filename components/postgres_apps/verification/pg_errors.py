"""PostgreSQL / libpq errors → which check they break and which hint they get.

SQLSTATE first, the English text only as a fallback: the server translates its messages
(`lc_messages`), its SQLSTATE codes never change. The same approach as CloudNativePG's role
reconciler (cloudnative-pg/cloudnative-pg, `internal/management/controller/roles/
postgres_errors.go`: `getRoleError` maps `pgconn.PgError.Code` — 2BP01, 42704 — to the errors it
expects and passes every other error along).

Where a SQLSTATE exists: every failed *statement* (psycopg's `Error.sqlstate`; psql prints it with
`VERBOSITY=verbose`, probe.sh copies it into the report). Where it does not: a failed *login*. libpq
formats the server's FATAL during start-up before any verbosity applies, and neither psql nor
psycopg exposes its code (psycopg's `OperationalError.sqlstate` is None there; tested against
PostgreSQL 15). Login failures and libpq's own transport errors are therefore classified by their
English text; `lc_messages` is a server setting (superuser only), and the server answers a login in
its default locale.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from postgres_apps.verification.runbook import hint

Cause = Literal["dns", "tcp", "login"]

_TCP_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03"})
"""admin_shutdown, crash_shutdown, cannot_connect_now (starting up, shutting down, recovery):
no server to log in to, like class 08 (connection_exception)."""

_DNS_PATTERNS = (
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "no address associated with hostname",
    "name does not resolve",
    "try again",
)
_TCP_PATTERNS = (
    "connection refused",
    "timeout expired",
    "timed out",
    "no route to host",
    "network is unreachable",
    "host is unreachable",
    "connection reset",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "no such file or directory",
)


def classify_connect_error(error: str, sqlstate: str | None = None) -> Cause:
    """Which layer a failed connection attempt broke at: name resolution, transport, or login.

    SQLSTATE first (class 08 and 57P0x: the server is not there to log in to; class 28, 3D000,
    42501, 53300: it answered); the English text only when there is none (libpq's own transport
    errors and every login failure: see the module docstring)."""
    if sqlstate:
        if sqlstate.startswith("08") or sqlstate in _TCP_SQLSTATES:
            return "tcp"
        return "login"
    low = error.lower()
    if any(p in low for p in _DNS_PATTERNS):
        return "dns"
    if any(p in low for p in _TCP_PATTERNS):
        return "tcp"
    return "login"


_LOGIN_HINTS: Final[tuple[tuple[tuple[str, ...], str, str], ...]] = (
    # (all of these substrings of the English message, runbook anchor, hint)
    (
        ("password authentication failed",),
        "password-authentication-failed",
        "the Secret {secret} and the role disagree; run pulumi up --refresh to re-sync",
    ),
    (
        ("no pg_hba.conf entry",),
        "no-pg_hba-entry",
        "the server's pg_hba.conf does not admit this client/user/database; allow the apps' "
        "network with scram-sha-256",
    ),
    (
        ("role", "does not exist"),
        "role-does-not-exist",
        "the role was not created; run pulumi up --refresh",
    ),
    (
        ("database", "does not exist"),
        "database-does-not-exist",
        "the database was not created; run pulumi up --refresh",
    ),
    (
        ("permission denied for database",),
        "permission-denied-for-database",
        "the role lacks CONNECT on its own database (revoked from its owner by hand; no resource "
        "manages it, pulumi up --refresh does not restore it): as admin, GRANT CONNECT, TEMPORARY "
        "ON DATABASE <database> TO <role>",
    ),
    (
        ("too many connections",),
        "too-many-connections",
        "the role's connection limit (or max_connections) is reached; raise connectionLimit or "
        "find the leaking client",
    ),
    (
        ("not permitted to log in",),
        "role-cannot-login",
        "the role has NOLOGIN; run pulumi up --refresh",
    ),
    (
        ("ssl",),
        "ssl",
        "the server and the configured sslmode disagree; fix postgres-apps:sslmode",
    ),
)


_ANCHOR_HINT: Final = {anchor: text for _, anchor, text in _LOGIN_HINTS}

LOGIN_SQLSTATES: Final[dict[str, str]] = {
    "28P01": "password-authentication-failed",  # invalid_password
    "3D000": "database-does-not-exist",  # invalid_catalog_name
    "42501": "permission-denied-for-database",  # insufficient_privilege
    "53300": "too-many-connections",  # too_many_connections
}
"""SQLSTATE → runbook anchor, for the codes that name one cause. 28000
(invalid_authorization_specification) is shared by "no pg_hba.conf entry", "role does not exist"
and "not permitted to log in": the text tells them apart (`_LOGIN_HINTS`)."""


def login_hint(error: str, sqlstate: str | None = None) -> str:
    """A hint for a login failure: by SQLSTATE when it names one cause, else from the English
    message (libpq reports no SQLSTATE for a refused login). `{secret}` is filled in later."""
    anchor = LOGIN_SQLSTATES.get(sqlstate or "")
    if anchor is not None:
        return hint(anchor, _ANCHOR_HINT[anchor])
    low = error.lower()
    for needles, anchor, text in _LOGIN_HINTS:
        if all(n in low for n in needles):
            return hint(anchor, text)
    return hint("login", "check the Secret {secret} against the role and database")


INSUFFICIENT_PRIVILEGE: Final = "42501"


def is_connect_privilege_refusal(error: str, sqlstate: str | None = None) -> bool:
    """A login refused by the server's CONNECT check (what the isolation check must see):
    SQLSTATE 42501 when the runner has it, else libpq's English "permission denied for database"."""
    if sqlstate:
        return sqlstate == INSUFFICIENT_PRIVILEGE
    return "permission denied for database" in error.lower()


_LINE_SUFFIX = re.compile(r"\s+(LINE \d+|LOCATION):.*$", re.DOTALL)


def sql_error(error: str) -> str:
    """A server error as one short line: no `ERROR:` prefix, no `LINE n: … ^` excerpt."""
    text = _LINE_SUFFIX.sub("", error.strip())
    return text.removeprefix("ERROR:").strip()

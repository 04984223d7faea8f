"""Every SQL statement the probe sends, for both runners: the one source of the probe's SQL.

The direct runner executes these texts with psycopg; the pod runner hands them to probe.sh in
`PROBE_*_SQL` environment variables (`probe_env`), which sends them with psql as given. probe.sh
carries no SQL of its own (a unit test reads it), so the runners cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from postgres_apps.verification.report import CRUD_STEPS, PRIVILEGE_FLAGS

LOGIN_SQL: Final = "SELECT current_user, current_database(), current_setting('server_version')"
"""Right after the login: who the session is, where, and the server version."""

PRIVILEGES_SQL: Final = (
    f"SELECT {', '.join(PRIVILEGE_FLAGS)} FROM pg_roles WHERE rolname = current_user"  # noqa: S608 - constant column list
)
"""The role's attributes (`report.PRIVILEGE_FLAGS`, in that order)."""

PING_SQL: Final = "SELECT 1"
"""The timed round trip (`roundtrips` times), and the statement the refused login would send."""

URI_SQL: Final = "SELECT current_user, current_database()"
"""Sent over the Secret's uri: it must log in as the same user on the same database."""

CRUD_SQL: Final[dict[str, str]] = {
    "create": "CREATE TABLE {table} (id integer PRIMARY KEY, v text NOT NULL)",
    "insert": "INSERT INTO {table} (id, v) VALUES (1, 'probe')",
    "select": "SELECT v FROM {table} WHERE id = 1",
    "update": "UPDATE {table} SET v = 'updated' WHERE id = 1 RETURNING v",
    "delete": "DELETE FROM {table} WHERE id = 1",
    "drop": "DROP TABLE {table}",
}
"""The scratch-table round, one statement per `report.CRUD_STEPS` step; `select` and `update`
return one value (expected 'probe' and 'updated')."""

CRUD_CLEANUP_SQL: Final = "DROP TABLE IF EXISTS {table}"
"""After a failed step: leave no scratch table behind."""

_TABLE = re.compile(r"postgres_apps_probe_[a-z0-9_]{1,40}")


def probe_table(seed: str) -> str:
    """The scratch table's name: plain lower case (no quoting needed), unique per seed."""
    return "postgres_apps_probe_" + hashlib.sha256(seed.encode()).hexdigest()[:8]


def crud_statements(table: str) -> dict[str, str]:
    """`CRUD_SQL` for one table (a `probe_table` name), step → complete statement."""
    if not _TABLE.fullmatch(table):
        raise ValueError(f"not a probe table name: {table!r}")
    if tuple(CRUD_SQL) != CRUD_STEPS:
        raise RuntimeError("CRUD_SQL and CRUD_STEPS disagree")
    return {step: sql.format(table=table) for step, sql in CRUD_SQL.items()}


def crud_cleanup(table: str) -> str:
    crud_statements(table)  # validates the name
    return CRUD_CLEANUP_SQL.format(table=table)


@dataclass(frozen=True)
class Peer:
    """Another managed app, as the isolation check sees it: its database and its role."""

    database: str
    role: str


def isolation_input(peers: Sequence[Peer], allowed: Collection[str]) -> str:
    """The statement's one input: `{"databases", "roles", "allowed"}` as a SQL literal.

    An `E'…'` string (read the same whatever `standard_conforming_strings` says, which the app
    role could set for itself) of ASCII-only JSON with every `$` as `\\u0024`: nothing in it that
    psql (`:var`), the kubelet (`$(VAR)`, `$$`) or the server could read differently.
    """
    doc = json.dumps(
        {
            "databases": [p.database for p in peers],
            "roles": [p.role for p in peers],
            "allowed": sorted(set(allowed)),
        },
        ensure_ascii=True,
        separators=(",", ":"),
    ).replace("$", "\\u0024")
    return "E'" + doc.replace("\\", "\\\\").replace("'", "''") + "'"


ISOLATION_SQL: Final = (
    "WITH input AS (SELECT {input}::jsonb AS j),"
    " peer_db AS (SELECT jsonb_array_elements_text(j->'databases') AS name FROM input),"
    " peer_role AS (SELECT jsonb_array_elements_text(j->'roles') AS name FROM input),"
    " allowed AS (SELECT jsonb_array_elements_text(j->'allowed') AS name FROM input),"
    " other AS (SELECT datname, datname IN (SELECT name FROM peer_db) AS peer,"
    " has_database_privilege(oid, 'CONNECT') AS can_connect,"
    " has_database_privilege(oid, 'TEMPORARY') AS can_temp"
    " FROM pg_database WHERE datallowconn AND datname <> current_database()"
    " AND datname NOT IN (SELECT name FROM allowed)),"
    " target AS (SELECT datname FROM other WHERE NOT can_connect AND datname !~ '[[:cntrl:]]'"
    " ORDER BY NOT peer, datname <> 'postgres', datname <= current_database(), datname LIMIT 1)"
    " SELECT (SELECT datname FROM target), json_build_object("
    "'peers', (SELECT count(*) FROM peer_db),"
    " 'allowed', ARRAY(SELECT name FROM allowed ORDER BY name COLLATE \"C\"),"
    " 'outbound', json_build_object("
    "'checked', (SELECT count(*) FROM other),"
    " 'reachable', ARRAY(SELECT datname FROM other WHERE can_connect ORDER BY datname),"
    " 'temporary', ARRAY(SELECT datname FROM other WHERE can_connect AND can_temp"
    " ORDER BY datname),"
    " 'missing', ARRAY(SELECT name FROM peer_db"
    ' WHERE name NOT IN (SELECT datname FROM pg_database) ORDER BY name COLLATE "C")),'
    " 'inbound', json_build_object("
    "'roles', ARRAY(SELECT rolname FROM pg_roles WHERE rolname IN (SELECT name FROM peer_role)"
    " AND has_database_privilege(rolname, current_database(), 'CONNECT') ORDER BY rolname),"
    " 'public_connect', EXISTS(SELECT 1 FROM pg_database d,"
    " aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a"
    " WHERE d.datname = current_database() AND a.grantee = 0 AND a.privilege_type = 'CONNECT'),"
    " 'missing', ARRAY(SELECT name FROM peer_role"
    ' WHERE name NOT IN (SELECT rolname FROM pg_roles) ORDER BY name COLLATE "C")),'
    " 'login_target', (SELECT datname FROM target))"
)
"""The isolation query, sent as the app's own role in the session the check already has: one
round trip whatever the number of databases. `{input}` is `isolation_input(...)`; the complete
text is built once in Python (`isolation_statement`) and both runners send it as it is (the pod
gets it in `PROBE_ISOLATION_SQL`, see `probe_env`).

Row: (login target, facts as JSON). Facts: `peers` (count of managed peers given), `allowed`
(the allow-list), `outbound` — `checked`: databases other than its own that accept connections
(`datallowconn`) and are not allowed; `reachable`: those this role may CONNECT to (directly,
through a role it belongs to, or PUBLIC; every one for a superuser); `temporary`: reachable ones
where it may also create temporary tables; `missing`: peer databases the server does not know —
`inbound` — `roles`: peer roles that may CONNECT here; `public_connect`: PUBLIC holds CONNECT here
(a NULL `datacl` is the default ACL, which grants it; the owner — the app role — can grant it
itself); `missing`: unknown peer roles — and `login_target`: the ONE database the runner then
logs in to, which must be refused: among the checked databases this role may not connect to, a
peer first (the next after its own in sorted order, wrapping: n apps, each peer database gets
one), else `postgres`, else the next other one."""


def isolation_statement(peers: Sequence[Peer], allowed: Collection[str] = ()) -> str:
    """The complete isolation statement both runners send (no parameters, no terminator)."""
    return ISOLATION_SQL.format(input=isolation_input(peers, allowed))


def probe_env(peers: Sequence[Peer], allowed: Collection[str], table: str) -> dict[str, str]:
    """probe.sh's statements, by environment variable (values as they are; the pod runner escapes
    them for the kubelet's `$(VAR)` expansion)."""
    env = {
        "PROBE_LOGIN_SQL": LOGIN_SQL,
        "PROBE_PRIVILEGES_SQL": PRIVILEGES_SQL,
        "PROBE_ISOLATION_SQL": isolation_statement(peers, allowed),
        "PROBE_PING_SQL": PING_SQL,
        "PROBE_URI_SQL": URI_SQL,
        "PROBE_CRUD_TABLE": table,
        "PROBE_CRUD_CLEANUP_SQL": crud_cleanup(table),
    }
    env |= {f"PROBE_CRUD_{step.upper()}_SQL": sql for step, sql in crud_statements(table).items()}
    return env

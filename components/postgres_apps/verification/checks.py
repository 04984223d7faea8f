"""The checks: one list, one report shape, and the judgement shared by both runners.

Both runners (``direct``: Python + psycopg; ``pod``: the sh + psql script in ``probe.sh``) only
*measure*: they produce the same raw **probe report** (a JSON object, schema
``postgres-apps.verification.report/v1``). :func:`judge` turns a report into the **verdict**
(schema ``postgres-apps.verification/v1``): per check ``pass`` / ``fail`` / ``skip``, a message
that says what was seen, and a hint. Everything here is pure (no I/O), so every failure message is
unit-tested once for both runners.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

CHECKS: Final[tuple[str, ...]] = (
    "dns",
    "tcp",
    "login",
    "uri",
    "crud",
    "privileges",
    "isolation",
    "latency",
)
"""Stable check names, in the order they run (used in messages, outputs and docs)."""

REPORT_SCHEMA: Final = "postgres-apps.verification.report/v3"
"""v3: `isolation` covers every database on the server (`allowed`, `outbound.checked`,
`outbound.temporary`, `login_target`; `refused_login` null when there is no target). v2: one
object (privilege queries both ways + one refused login) instead of v1's list of refused logins
to every other database."""
VERDICT_SCHEMA: Final = "postgres-apps.verification/v1"
CRUD_STEPS: Final[tuple[str, ...]] = ("create", "insert", "select", "update", "delete", "drop")
PRIVILEGE_FLAGS: Final[tuple[str, ...]] = (
    "rolsuper",
    "rolcreaterole",
    "rolcreatedb",
    "rolreplication",
    "rolbypassrls",
)
RUNBOOK: Final = "docs/runbooks/postgres-connectivity.md"
RUNBOOK_ANCHORS: Final[frozenset[str]] = frozenset(
    {
        "dns",
        "connection-refused",
        "login",
        "password-authentication-failed",
        "no-pg_hba-entry",
        "role-does-not-exist",
        "database-does-not-exist",
        "permission-denied-for-database",
        "too-many-connections",
        "role-cannot-login",
        "ssl",
        "uri",
        "uri-encoding",
        "crud",
        "privileges",
        "excess-privileges",
        "isolation",
        "latency",
        "probe-pod",
    }
)
"""Every `#anchor` a hint links to (the runbook needs an `<a id="…">` for each)."""

Status = Literal["pass", "fail", "skip"]
Cause = Literal["dns", "tcp", "login"]


@dataclass(frozen=True)
class CheckOutcome:
    """The judgement of one check."""

    name: str
    status: Status
    message: str
    hint: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Verdict:
    """Every check judged, plus the numbers that become the resource's outputs."""

    app: str
    runner: str
    checks: tuple[CheckOutcome, ...]
    connect_ms: float | None
    roundtrip_p50_ms: float | None
    roundtrip_p95_ms: float | None
    server_version: str | None
    checked_at: str
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def failed(self) -> tuple[CheckOutcome, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def passed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "pass"]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": VERDICT_SCHEMA,
            "app": self.app,
            "runner": self.runner,
            "ok": self.ok,
            "failed": [c.name for c in self.failed],
            "checks_passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
            "connect_ms": self.connect_ms,
            "roundtrip_p50_ms": self.roundtrip_p50_ms,
            "roundtrip_p95_ms": self.roundtrip_p95_ms,
            "server_version": self.server_version,
            "checked_at": self.checked_at,
            "report": dict(self.report),
        }

    def error_message(self, secret_name: str) -> str:
        """The `pulumi up` failure: app, first failed check, what was seen, hint; then the rest."""
        failed = self.failed
        if not failed:
            return ""
        first = failed[0]
        text = f'app "{self.app}": check "{first.name}" failed: {first.message}'
        if first.hint:
            text += f" — {first.hint.format(secret=secret_name)}"
        others = [f'"{c.name}" ({c.message})' for c in failed[1:]]
        if others:
            text += "; also failed: " + "; ".join(others)
        return text


# ---------------------------------------------------------------------------------------------
# Error classification (libpq / psql / psycopg messages → which check they break)
# ---------------------------------------------------------------------------------------------

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


def classify_connect_error(error: str) -> Cause:
    """Which layer a failed connection attempt broke at: name resolution, transport, or login."""
    low = error.lower()
    if any(p in low for p in _DNS_PATTERNS):
        return "dns"
    if any(p in low for p in _TCP_PATTERNS):
        return "tcp"
    return "login"


def _hint(anchor: str, text: str) -> str:
    if anchor not in RUNBOOK_ANCHORS:
        raise ValueError(f"unknown runbook anchor {anchor!r}")
    return f"{text}, or see {RUNBOOK}#{anchor}"


_LOGIN_HINTS: Final[tuple[tuple[tuple[str, ...], str, str], ...]] = (
    # (all of these substrings, runbook anchor, hint)
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


def login_hint(error: str) -> str:
    """A hint for a login failure, from the server's message. `{secret}` is filled in later."""
    low = error.lower()
    for needles, anchor, text in _LOGIN_HINTS:
        if all(n in low for n in needles):
            return _hint(anchor, text)
    return _hint("login", "check the Secret {secret} against the role and database")


# ---------------------------------------------------------------------------------------------
# Secrets never leave the probe
# ---------------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"([^"]*)"')


def redact(text: str, secret: str | None, keep: Collection[str] = ()) -> str:
    """Remove the password and fragments of it (libpq echoes mis-parsed URI parts).

    Replaced: every run of ≥ 6 characters that also occurs in the password, and every quoted
    token of ≥ 4 characters that is part of the password, unless it is one of `keep` (the app,
    user, database and host names the messages legitimately quote).
    """
    if not secret:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        n = _longest_run_at(text, i, secret)
        if n >= _MIN_RUN:
            out.append("<redacted>")
            i += n
        else:
            out.append(text[i])
            i += 1
    result = "".join(out)

    def _sub(m: re.Match[str]) -> str:
        token = m.group(1)
        if len(token) >= _MIN_QUOTED and token in secret and token not in keep:
            return '"<redacted>"'
        return m.group(0)

    return _QUOTED.sub(_sub, result)


_MIN_RUN: Final = 6
_MIN_QUOTED: Final = 4


def _longest_run_at(text: str, i: int, secret: str) -> int:
    """Length of the longest prefix of text[i:] that occurs in secret (0 if < _MIN_RUN)."""
    if i + _MIN_RUN > len(text) or text[i : i + _MIN_RUN] not in secret:
        return 0
    n = _MIN_RUN
    while i + n < len(text) and text[i : i + n + 1] in secret:
        n += 1
    return n


def redact_report(value: Any, secret: str | None, keep: Collection[str] = ()) -> Any:
    """`redact` applied to every string in a report (recursively)."""
    if isinstance(value, str):
        return redact(value, secret, keep)
    if isinstance(value, list):
        return [redact_report(v, secret, keep) for v in value]
    if isinstance(value, dict):
        return {k: redact_report(v, secret, keep) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or f < 0:
        return None
    return round(f, 3)


# ---------------------------------------------------------------------------------------------
# The judges, one per check
# ---------------------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def judge_dns(report: Mapping[str, Any]) -> CheckOutcome:
    dns = _dict(report.get("dns"))
    if dns is None:
        return CheckOutcome("dns", "skip", "not measured by this runner (pod mode only)")
    host = str(dns.get("host") or "")
    addresses = [str(a) for a in dns.get("addresses") or []]
    if addresses:
        return CheckOutcome("dns", "pass", f"{host} resolves to {', '.join(addresses)}")
    seen = dns.get("error") or "no address returned"
    return CheckOutcome(
        "dns",
        "fail",
        f"{host} does not resolve ({seen})",
        _hint(
            "dns",
            "check postgres-apps:host (the Service name, e.g. "
            "postgres-postgresql.data.svc.cluster.local) and that the Service exists",
        ),
    )


def _login_error(report: Mapping[str, Any]) -> str | None:
    login = _dict(report.get("login"))
    if login is None or login.get("ok"):
        return None
    return str(login.get("error") or "unknown error")


def judge_tcp(report: Mapping[str, Any]) -> CheckOutcome:
    target = _dict(report.get("target")) or {}
    where = f"{target.get('host')}:{target.get('port')}"
    tcp = _dict(report.get("tcp"))
    if tcp is not None and tcp.get("ok") is not None:
        if tcp["ok"]:
            ms = _ms(tcp.get("ms"))
            return CheckOutcome("tcp", "pass", f"{where} accepts connections ({ms} ms)")
        return _tcp_fail(where, str(tcp.get("error") or "connect failed"))
    # Not measured separately (the pod script): derive it from the login attempt.
    err = _login_error(report)
    login = _dict(report.get("login"))
    if login is None:
        return CheckOutcome("tcp", "skip", "not measured")
    if err is None or classify_connect_error(err) == "login":
        return CheckOutcome("tcp", "pass", f"{where} accepts connections (server answered)")
    if classify_connect_error(err) == "dns" and judge_dns(report).status == "fail":
        return CheckOutcome("tcp", "skip", f"{where}: name does not resolve (see dns)")
    return _tcp_fail(where, err)


def _tcp_fail(where: str, error: str) -> CheckOutcome:
    return CheckOutcome(
        "tcp",
        "fail",
        f"cannot open a connection to {where}: {error.strip()}",
        _hint(
            "connection-refused",
            "is PostgreSQL running and is the endpoint right? (direct mode: the admin endpoint/"
            "port-forward; pod mode: the Service and NetworkPolicies)",
        ),
    )


def judge_login(report: Mapping[str, Any]) -> CheckOutcome:
    login = _dict(report.get("login"))
    if login is None:
        return CheckOutcome("login", "skip", "not attempted")
    target = _dict(report.get("target")) or {}
    who = f'user "{target.get("user")}" on database "{target.get("database")}"'
    if login.get("ok"):
        user = login.get("current_user")
        if user is not None and user != target.get("user"):
            return CheckOutcome(
                "login",
                "fail",
                f'logged in as "{user}", expected "{target.get("user")}"',
                _hint("login", "the Secret {secret} names the wrong user; run pulumi up --refresh"),
            )
        return CheckOutcome("login", "pass", f"logged in as {who}")
    err = str(login.get("error") or "unknown error").strip()
    tcp = _dict(report.get("tcp"))
    tcp_measured_ok = tcp is not None and tcp.get("ok") is True
    if classify_connect_error(err) != "login" and not tcp_measured_ok:
        # The tcp (or dns) check reports this error.
        return CheckOutcome("login", "skip", "no server to log in to (see tcp/dns)")
    return CheckOutcome("login", "fail", err, login_hint(err))


_URI_ENCODING_HINT: Final = _hint(
    "uri-encoding",
    "user, password and database in the uri of Secret {secret} must be percent-encoded "
    "(the individual keys work); run pulumi up --refresh to rewrite it",
)


def _uri_misparsed(uri: Mapping[str, Any]) -> CheckOutcome | None:
    """The direct runner reports how libpq parsed the uri: it must name the Secret's endpoint."""
    parsed, expected = _dict(uri.get("parsed")), _dict(uri.get("expected"))
    if parsed is None or expected is None:
        return None
    wrong = [
        f"{k} {parsed.get(k)!r} (expected {expected.get(k)!r})"
        for k in ("host", "port", "dbname", "user")
        if str(parsed.get(k)) != str(expected.get(k))
    ]
    if not wrong:
        return None
    return CheckOutcome(
        "uri", "fail", "libpq reads the Secret's uri as " + ", ".join(wrong), _URI_ENCODING_HINT
    )


def _uri_connected(uri: Mapping[str, Any], target: Mapping[str, Any]) -> CheckOutcome:
    user, db = uri.get("current_user"), uri.get("database")
    if (user, db) != (target.get("user"), target.get("database")):
        return CheckOutcome(
            "uri",
            "fail",
            f'uri logs in as "{user}" on "{db}", expected "{target.get("user")}" on '
            f'"{target.get("database")}"',
            _hint("uri", "the uri in Secret {secret} disagrees with its other keys"),
        )
    return CheckOutcome("uri", "pass", "the Secret's uri connects as given")


def judge_uri(report: Mapping[str, Any]) -> CheckOutcome:
    uri = _dict(report.get("uri"))
    if uri is None:
        return CheckOutcome("uri", "skip", "not attempted")
    if not uri.get("given"):
        return CheckOutcome(
            "uri",
            "fail",
            "the Secret has no uri",
            _hint("uri", "the Secret {secret} lacks the key uri; run pulumi up --refresh"),
        )
    misparsed = _uri_misparsed(uri)
    if misparsed is not None:
        return misparsed
    if uri.get("ok"):
        return _uri_connected(uri, _dict(report.get("target")) or {})
    if _login_error(report) is not None:
        return CheckOutcome("uri", "skip", "login with the Secret's keys failed first")
    err = str(uri.get("error") or "unknown error").strip()
    return CheckOutcome(
        "uri", "fail", f"the Secret's uri does not connect as given: {err}", _URI_ENCODING_HINT
    )


_LINE_SUFFIX = re.compile(r"\s+LINE \d+:.*$", re.DOTALL)


def sql_error(error: str) -> str:
    """A server error as one short line: no `ERROR:` prefix, no `LINE n: … ^` excerpt."""
    text = _LINE_SUFFIX.sub("", error.strip())
    return text.removeprefix("ERROR:").strip()


def judge_crud(report: Mapping[str, Any]) -> CheckOutcome:
    crud = _dict(report.get("crud"))
    if crud is None:
        return CheckOutcome("crud", "skip", "not attempted (login failed)")
    done = [str(s) for s in crud.get("steps") or []]
    failed_step = crud.get("failed_step")
    if failed_step is None and done == list(CRUD_STEPS):
        selected, updated = crud.get("selected"), crud.get("updated")
        if selected != "probe" or updated != "updated":
            return CheckOutcome(
                "crud",
                "fail",
                f"read back {selected!r} after insert and {updated!r} after update, "
                "expected 'probe' and 'updated'",
                _hint("crud", "the scratch table returned wrong rows; check triggers/policies"),
            )
        return CheckOutcome("crud", "pass", "create, insert, select, update, delete, drop")
    step = failed_step or (CRUD_STEPS[len(done)] if len(done) < len(CRUD_STEPS) else "?")
    err = sql_error(str(crud.get("error") or "unknown error"))
    return CheckOutcome(
        "crud",
        "fail",
        f"{step} on a scratch table failed: {err}",
        _hint(
            "crud",
            "the role must own its database (and so the public schema on PostgreSQL 15+); "
            "run pulumi up --refresh to restore ownership",
        ),
    )


_FLAG_WORD = {
    "rolsuper": "SUPERUSER",
    "rolcreaterole": "CREATEROLE",
    "rolcreatedb": "CREATEDB",
    "rolreplication": "REPLICATION",
    "rolbypassrls": "BYPASSRLS",
}


def judge_privileges(report: Mapping[str, Any]) -> CheckOutcome:
    priv = _dict(report.get("privileges"))
    if priv is None:
        return CheckOutcome("privileges", "skip", "not attempted (login failed)")
    if priv.get("error"):
        return CheckOutcome(
            "privileges",
            "fail",
            f"could not read the role's attributes: {priv['error']}",
            _hint("privileges", "the role must be able to read pg_roles"),
        )
    missing = [f for f in PRIVILEGE_FLAGS if f not in priv]
    if missing:
        return CheckOutcome(
            "privileges", "fail", f"role attributes not reported: {', '.join(missing)}", ""
        )
    extra = [_FLAG_WORD[f] for f in PRIVILEGE_FLAGS if priv.get(f) is True]
    if extra:
        return CheckOutcome(
            "privileges",
            "fail",
            f"the app role has {', '.join(extra)}",
            _hint(
                "excess-privileges",
                "someone altered the role by hand; run pulumi up --refresh to restore NOSUPERUSER "
                "NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
            ),
        )
    return CheckOutcome(
        "privileges", "pass", "no SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS"
    )


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
gets it in `PROBE_ISOLATION_SQL`).

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


def _str_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def sql_ident(name: str) -> str:
    """A name as SQL would need it in a REVOKE (double-quoted unless plain lower case)."""
    return name if _PLAIN_IDENT.fullmatch(name) else '"' + name.replace('"', '""') + '"'


ISOLATION_REPAIR: Final = (
    "run it as admin (pulumi up --refresh repairs a GRANT made by hand, not an ACL reset to the "
    "default)"
)
"""How the REVOKE hints end. The postgresql provider reads a database grant with
`aclexplode(datacl)` (upstream `readDatabaseRolePriviges`): an explicit GRANT shows as drift, a
NULL ACL (the default, which gives PUBLIC CONNECT) reads as no privilege, so refresh cannot see it
(runbook `#isolation`)."""


_MALFORMED_HINT: Final = _hint(
    "probe-pod", "the probe reported isolation in an unexpected shape (probe bug or image)"
)


def _isolation_shape_problem(iso: Any) -> str | None:
    """What is malformed in a report's `isolation` object (None: well-formed)."""
    if not isinstance(iso, dict):
        return f"expected an object, got {type(iso).__name__}"
    if iso.get("error"):
        return None if isinstance(iso["error"], str) else "error must be a string"
    out = _dict(iso.get("outbound")) or {}
    inb = _dict(iso.get("inbound")) or {}
    target = iso.get("login_target")
    login = iso.get("refused_login")
    rules = (
        (_count(iso.get("peers")), "peers must be a count"),
        (_str_list(iso.get("allowed")) is not None, "allowed must be a list of names"),
        (_count(out.get("checked")), "outbound.checked must be a count"),
        (
            all(_str_list(out.get(k)) is not None for k in ("reachable", "temporary", "missing")),
            "outbound.reachable/temporary/missing must be lists of names",
        ),
        (
            _str_list(inb.get("roles")) is not None and _str_list(inb.get("missing")) is not None,
            "inbound.roles/missing must be lists of names",
        ),
        (isinstance(inb.get("public_connect"), bool), "inbound.public_connect must be a boolean"),
        (target is None or isinstance(target, str), "login_target must be a name or null"),
        (
            (target is None and login is None)
            or (
                isinstance(login, dict)
                and login.get("database") == target
                and isinstance(login.get("connected"), bool)
            ),
            "refused_login needs the login_target's database and connected",
        ),
    )
    return next((what for ok, what in rules if not ok), None)


def _isolation_findings(
    iso: Mapping[str, Any], own_db: str, own_role: str
) -> tuple[list[str], list[str]]:
    """(what was seen, hints) for each part that failed; both empty when isolation holds."""
    reachable: list[str] = iso["outbound"]["reachable"]
    temporary: list[str] = iso["outbound"]["temporary"]
    roles: list[str] = iso["inbound"]["roles"]
    missing = [*iso["outbound"]["missing"], *iso["inbound"]["missing"]]
    login: Mapping[str, Any] | None = iso["refused_login"]
    seen: list[str] = []
    hints: list[str] = []
    if reachable:
        seen.append("the app can connect to databases other than its own: " + _quoted(reachable))
        if temporary:
            seen.append("it may also create temporary tables in: " + _quoted(temporary))
        hints.append(
            "revoke it: REVOKE CONNECT, TEMPORARY ON DATABASE "
            f"{', '.join(sql_ident(d) for d in reachable)} FROM PUBLIC (and FROM "
            f"{sql_ident(own_role)}); list the databases no app owns in "
            "postgres-apps:postgres.hardenDatabases, or a database the app may use on purpose "
            "in postgres-apps:verification.allowedDatabases"
        )
    if iso["inbound"]["public_connect"]:
        seen.append(f'PUBLIC holds CONNECT on this app\'s database "{own_db}"')
        hints.append(f"REVOKE CONNECT, TEMPORARY ON DATABASE {sql_ident(own_db)} FROM PUBLIC")
    if roles:
        # Through PUBLIC every role may connect: then PUBLIC's grant is the one to remove first.
        via = " (PUBLIC's grant covers them)" if iso["inbound"]["public_connect"] else ""
        seen.append(
            f"other apps' roles can connect to this app's database \"{own_db}\"{via}: "
            + _quoted(roles)
        )
        if not via:
            hints.append(
                f"remove the grant: REVOKE CONNECT ON DATABASE {sql_ident(own_db)} FROM "
                + ", ".join(sql_ident(r) for r in roles)
            )
    if login is not None:
        login_db = str(login["database"])
        if login["connected"]:
            if login_db not in reachable:
                seen.append(f'a login to "{login_db}" was not refused')
                hints.append(
                    f"REVOKE CONNECT, TEMPORARY ON DATABASE {sql_ident(login_db)} FROM PUBLIC"
                )
        elif "permission denied for database" not in str(login.get("error") or "").lower():
            seen.append(
                "could not prove isolation (expected 'permission denied for database'): "
                f'"{login_db}": {str(login.get("error") or "no error reported").strip()}'
            )
            hints.append(
                "the login must reach the server's CONNECT check (the database must exist and "
                "pg_hba.conf must not turn the login away first)"
            )
    if missing:
        seen.append("peers unknown to the server: " + _quoted(missing))
        hints.append("every other app's role and database must exist before this check runs")
    return seen, hints


def _isolation_pass_message(iso: Mapping[str, Any]) -> str:
    allowed: list[str] = iso["allowed"]
    note = f" (allowed: {_quoted(allowed)})" if allowed else ""
    login = iso["refused_login"]
    proof = (
        f'login to "{login["database"]}" refused'
        if login is not None
        else "no other database to prove a refused login against"
    )
    return (
        f"{iso['peers']} other apps, {iso['outbound']['checked']} other databases that accept "
        f"connections: none reachable{note}, no other app's role (nor PUBLIC) may connect here; "
        + proof
    )


def judge_isolation(report: Mapping[str, Any]) -> CheckOutcome:
    """Every database the app does not own (outbound), peer roles and PUBLIC (inbound), plus one
    real login that must be refused."""
    iso = report.get("isolation")
    if iso is None:
        return CheckOutcome("isolation", "skip", "not attempted (login failed)")
    problem = _isolation_shape_problem(iso)
    if problem is not None:
        return CheckOutcome(
            "isolation", "fail", f"malformed isolation report: {problem}", _MALFORMED_HINT
        )
    if iso.get("error"):
        return CheckOutcome(
            "isolation",
            "fail",
            f"could not query the privileges: {sql_error(str(iso['error']))}",
            _hint("isolation", "the app role must be able to read pg_database and pg_roles"),
        )
    target = _dict(report.get("target")) or {}
    seen, hints = _isolation_findings(iso, str(target.get("database")), str(target.get("user")))
    if seen:
        return CheckOutcome(
            "isolation",
            "fail",
            "; ".join(seen),
            _hint("isolation", "; ".join(hints) + f"; {ISOLATION_REPAIR}"),
        )
    return CheckOutcome("isolation", "pass", _isolation_pass_message(iso))


def connect_time(login: Mapping[str, Any]) -> float | None:
    """Median of the connect samples (both runners take 3), else the single `ms`."""
    samples = [v for v in (_ms(x) for x in login.get("connect_samples_ms") or []) if v is not None]
    if samples:
        return percentile(samples, 50)
    return _ms(login.get("ms"))


def judge_latency(report: Mapping[str, Any], budget_ms: float) -> CheckOutcome:
    login = _dict(report.get("login"))
    if login is None or not login.get("ok"):
        return CheckOutcome("latency", "skip", "not measured (login failed)")
    connect = connect_time(login)
    samples = [v for v in (_ms(x) for x in report.get("roundtrips_ms") or []) if v is not None]
    if connect is None or not samples:
        return CheckOutcome(
            "latency", "fail", "no timings were reported", _hint("latency", "probe problem")
        )
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    seen = f"connect {connect} ms, round trip p50 {p50} ms / p95 {p95} ms over {len(samples)}"
    over = [
        f"{what} {value} ms > {budget_ms:g} ms"
        for what, value in (("connect", connect), ("p95", p95))
        if value > budget_ms
    ]
    if over:
        return CheckOutcome(
            "latency",
            "fail",
            f"{seen}: over budget ({'; '.join(over)})",
            _hint(
                "latency",
                "the path to PostgreSQL is slow (node/network/CPU saturation) or the budget "
                "postgres-apps:verification.latencyBudgetMs is too tight",
            ),
        )
    return CheckOutcome("latency", "pass", f"{seen} (budget {budget_ms:g} ms)")


def judge(
    report: Mapping[str, Any], *, latency_budget_ms: float, checked_at: str | None = None
) -> Verdict:
    """Turn a raw probe report (either runner) into the verdict."""
    if report.get("schema") != REPORT_SCHEMA:
        raise ValueError(f"not a probe report (schema {report.get('schema')!r})")
    outcomes: tuple[CheckOutcome, ...] = (
        judge_dns(report),
        judge_tcp(report),
        judge_login(report),
        judge_uri(report),
        judge_crud(report),
        judge_privileges(report),
        judge_isolation(report),
        judge_latency(report, latency_budget_ms),
    )
    if tuple(o.name for o in outcomes) != CHECKS:  # the single list of checks, in order
        raise RuntimeError("judge() and CHECKS disagree")
    login_facts = _dict(report.get("login"))
    if (login_facts is None or not login_facts.get("ok")) and all(
        o.status != "fail" for o in outcomes
    ):
        # Safety net: whatever the classification, no login is never a pass.
        err = str((login_facts or {}).get("error") or "no login attempt was reported")
        outcomes = tuple(
            CheckOutcome("login", "fail", err, login_hint(err)) if o.name == "login" else o
            for o in outcomes
        )
    elif login_facts is not None and login_facts.get("ok"):
        # After a good login every check but dns must have been measured.
        outcomes = tuple(
            CheckOutcome(
                o.name,
                "fail",
                f"not measured although login worked ({o.message})",
                _hint("probe-pod", "the probe did not report this check (probe bug or image)"),
            )
            if o.status == "skip" and o.name != "dns"
            else o
            for o in outcomes
        )
    login = _dict(report.get("login")) or {}
    samples = [v for v in (_ms(x) for x in report.get("roundtrips_ms") or []) if v is not None]
    return Verdict(
        app=str(report.get("app")),
        runner=str(report.get("runner")),
        checks=outcomes,
        connect_ms=connect_time(login) if login.get("ok") else None,
        roundtrip_p50_ms=percentile(samples, 50) if samples else None,
        roundtrip_p95_ms=percentile(samples, 95) if samples else None,
        server_version=(str(login["server_version"]) if login.get("server_version") else None),
        checked_at=checked_at or str(report.get("finished_at") or report.get("started_at") or ""),
        report=report,
    )

"""The `direct` runner: the probe from the Pulumi host with psycopg, through the admin endpoint.

It only measures and fills in a probe report (`report.py`); `judgement.judge` decides. Its SQL
is `statements.py`'s, the same texts the pod runner's probe.sh sends.
psycopg is imported inside the function: this module is imported by the dynamic provider, whose
object is pickled into state.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from postgres_apps.verification.redaction import redact_report
from postgres_apps.verification.report import CRUD_STEPS, PRIVILEGE_FLAGS, REPORT_SCHEMA
from postgres_apps.verification.statements import (
    LOGIN_SQL,
    PING_SQL,
    PRIVILEGES_SQL,
    URI_SQL,
    Peer,
    crud_cleanup,
    crud_statements,
    isolation_statement,
    probe_table,
)

APPLICATION_NAME = "postgres-apps-verify"


@dataclass(frozen=True)
class DirectTarget:
    """Where and as whom the direct runner connects (the app's credentials, the admin endpoint)."""

    app: str
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    sslmode: str = "prefer"
    uri: str | None = field(default=None, repr=False)
    """The Secret's `uri` as given; None → built from the parts the way the Secret is."""
    peers: Sequence[Peer] = ()
    """The other managed apps: none may reach this app's database, nor this app theirs."""
    allowed_databases: Sequence[str] = ()
    """Databases this app may connect to on purpose (not reported by the isolation check)."""
    secret_host: str | None = None
    """The host/port the Secret names (in-cluster); the parsed uri must name the same."""
    secret_port: int | None = None
    connect_timeout_s: int = 10
    roundtrips: int = 20
    connection_strings: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Secret key → value for the keys the config marks as connection strings: each is tried
    like the uri (as given, host/port swapped for the endpoint)."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_report(app: str, runner: str, target: dict[str, Any]) -> dict[str, Any]:
    """An empty report: `None` = not measured."""
    return {
        "schema": REPORT_SCHEMA,
        "app": app,
        "runner": runner,
        "target": target,
        "started_at": now_iso(),
        "finished_at": None,
        "dns": None,
        "tcp": None,
        "login": None,
        "uri": None,
        "crud": None,
        "privileges": None,
        "isolation": None,
        "roundtrips_ms": None,
    }


def build_uri(
    *, user: str, password: str, host: str, port: int, database: str, sslmode: str
) -> str:
    """The Secret's `uri` format (password percent-encoded)."""
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
        f"{quote(database, safe='')}?sslmode={sslmode}"
    )


def error_text(exc: BaseException) -> str:
    """One line: libpq's multi-line messages joined, whitespace collapsed."""
    text = " ".join((str(exc) or type(exc).__name__).split())
    return text.removeprefix("connection failed: ")


def error_facts(exc: BaseException) -> dict[str, Any]:
    """`error` (one line) and `sqlstate` (psycopg's, None when libpq has none: a failed login)."""
    code = getattr(exc, "sqlstate", None)
    return {"error": error_text(exc), "sqlstate": code if isinstance(code, str) else None}


def statement_timeout_options(timeout_s: int) -> str:
    """libpq `options` for every connection of the probe: no statement may hang the `up`."""
    return f"-c statement_timeout={timeout_s * 1000}"


TOO_MANY_CONNECTIONS = "53300"
"""SQLSTATE of "too many connections for role": also what a session the probe has just closed
causes while its server process is still exiting (it counts until then)."""
RECONNECT_TRIES = 20
RECONNECT_PAUSE_S = 0.025


def _connect(psycopg: Any, **params: Any) -> Any:
    """`psycopg.connect`, waiting up to 0.5 s for the role's own last session to be gone: the
    probe's connections follow each other, and an app with `connectionLimit: 1` would otherwise
    fail on the session it closed a millisecond ago. Another error, or the limit still reached
    after the wait (a real client holds it), is raised as it is."""
    for attempt in range(RECONNECT_TRIES):
        try:
            return psycopg.connect(**params)
        except psycopg.OperationalError as exc:
            if getattr(exc, "sqlstate", None) != TOO_MANY_CONNECTIONS or (
                attempt == RECONNECT_TRIES - 1
            ):
                raise
            time.sleep(RECONNECT_PAUSE_S)
    raise AssertionError("unreachable")  # pragma: no cover


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def run_direct_probe(t: DirectTarget) -> dict[str, Any]:
    """Measure everything the checks need; never raises for a failed measurement.

    Error texts are redacted: libpq echoes mis-parsed uri parts, which can be password pieces.
    """
    keep = {t.app, t.user, t.database, t.host, t.secret_host or ""}
    keep |= {p.database for p in t.peers} | {p.role for p in t.peers} | set(t.allowed_databases)
    report: dict[str, Any] = redact_report(_measure(t), t.password, keep)
    return report


def _measure(t: DirectTarget) -> dict[str, Any]:
    import psycopg  # noqa: PLC0415 - heavy client, imported where used (provider is pickled)
    from psycopg import conninfo  # noqa: PLC0415

    report = new_report(
        t.app,
        "direct",
        {"host": t.host, "port": t.port, "database": t.database, "user": t.user},
    )
    common: dict[str, Any] = {
        "sslmode": t.sslmode,
        "connect_timeout": t.connect_timeout_s,
        "application_name": APPLICATION_NAME,
        # no statement of the probe may hang the `up`
        "options": statement_timeout_options(t.connect_timeout_s),
        "autocommit": True,
    }

    # tcp: a plain socket to the endpoint
    start = time.perf_counter()
    try:
        with socket.create_connection((t.host, t.port), timeout=t.connect_timeout_s):
            report["tcp"] = {"ok": True, "ms": _elapsed_ms(start), "error": None}
    except OSError as exc:
        report["tcp"] = {"ok": False, "ms": None, "error": f"{type(exc).__name__}: {exc}"}
        report["finished_at"] = now_iso()
        return report

    # login with the Secret's individual keys; 3 connections timed (the judge takes the median)
    samples: list[float] = []
    conn = None
    for _ in range(3):
        if conn is not None:
            conn.close()
        start = time.perf_counter()
        try:
            conn = _connect(
                psycopg,
                host=t.host,
                port=t.port,
                dbname=t.database,
                user=t.user,
                password=t.password,
                **common,
            )
        except psycopg.Error as exc:
            report["login"] = {"ok": False, "ms": None, **error_facts(exc)}
            report["finished_at"] = now_iso()
            return report
        samples.append(_elapsed_ms(start))
    assert conn is not None  # noqa: S101 - the loop ran at least once
    connect_ms = samples[0]
    try:
        with conn.cursor() as cur:
            cur.execute(LOGIN_SQL)
            row = cur.fetchone()
            assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
            report["login"] = {
                "ok": True,
                "ms": connect_ms,
                "connect_samples_ms": samples,
                "error": None,
                "current_user": row[0],
                "database": row[1],
                "server_version": row[2],
            }
            report["privileges"] = _privileges(cur, psycopg)
            report["isolation"], login_db = _isolation_query(
                cur, isolation_statement(t.peers, t.allowed_databases), psycopg
            )
        report["crud"] = _crud(conn, psycopg)
        report["roundtrips_ms"] = _roundtrips(conn, t.roundtrips)
    finally:
        conn.close()

    report["uri"] = _uri(t, common, psycopg, conninfo)
    report["connection_keys"] = {
        key: _connection_string(
            t, value, source="secret", common=common, psycopg=psycopg, conninfo=conninfo
        )
        for key, value in t.connection_strings.items()
    }
    if login_db is not None:
        report["isolation"]["refused_login"] = _try_database(t, login_db, common, psycopg)
    report["finished_at"] = now_iso()
    return report


def _privileges(cur: Any, psycopg: Any) -> dict[str, Any]:
    try:
        cur.execute(PRIVILEGES_SQL)
        row = cur.fetchone()
    except psycopg.Error as exc:
        return error_facts(exc)
    if row is None:
        return {"error": "current_user not found in pg_roles"}
    return dict(zip(PRIVILEGE_FLAGS, (bool(v) for v in row), strict=True))


def _isolation_query(cur: Any, statement: str, psycopg: Any) -> tuple[dict[str, Any], str | None]:
    """The facts in one round trip, as the app's role (see `statements.ISOLATION_SQL`), and the
    database the one refused login goes to (None: none, or the query failed)."""
    try:
        cur.execute(statement)
        row = cur.fetchone()
    except psycopg.Error as exc:
        return {"refused_login": None, **error_facts(exc)}, None
    if row is None or not isinstance(row[1], dict):
        return {"refused_login": None, "error": f"unexpected isolation row {row!r}"}, None
    target, facts = row
    return {**facts, "refused_login": None, "error": None}, target


def _crud(conn: Any, psycopg: Any) -> dict[str, Any]:
    name = probe_table(secrets.token_hex(8))
    done: list[str] = []
    out: dict[str, Any] = {"table": name, "steps": done, "failed_step": None, "error": None}
    statements = crud_statements(name)
    step = CRUD_STEPS[0]
    try:
        with conn.cursor() as cur:
            for step in CRUD_STEPS:
                cur.execute(statements[step])
                if step in ("select", "update"):
                    row = cur.fetchone()
                    out["selected" if step == "select" else "updated"] = row[0] if row else None
                done.append(step)
    except psycopg.Error as exc:
        out["failed_step"] = step
        out.update(error_facts(exc))
        try:
            with conn.cursor() as cur:
                cur.execute(crud_cleanup(name))
        except psycopg.Error:
            out["cleanup"] = "failed"
    return out


def _roundtrips(conn: Any, n: int) -> list[float]:
    samples: list[float] = []
    with conn.cursor() as cur:
        for _ in range(n):
            start = time.perf_counter()
            cur.execute(PING_SQL)
            cur.fetchone()
            samples.append(_elapsed_ms(start))
    return samples


def _uri(
    t: DirectTarget, common: dict[str, Any], psycopg: Any, conninfo: Any, uri_sql: str = URI_SQL
) -> dict[str, Any]:
    """Connect with the Secret's uri as given; only host/port are swapped for the endpoint, and
    the probe's statement_timeout is added (`uri_sql`: a test sends a slow statement)."""
    if t.uri is None:
        uri = build_uri(
            user=t.user,
            password=t.password,
            host=t.secret_host or t.host,
            port=t.secret_port or t.port,
            database=t.database,
            sslmode=t.sslmode,
        )
        source = "built"
    else:
        uri, source = t.uri, "secret"
    return _connection_string(
        t, uri, source=source, common=common, psycopg=psycopg, conninfo=conninfo, uri_sql=uri_sql
    )


def _connection_string(
    t: DirectTarget,
    value: str,
    *,
    source: str,
    common: dict[str, Any],
    psycopg: Any,
    conninfo: Any,
    uri_sql: str = URI_SQL,
) -> dict[str, Any]:
    """Log in with one connection string (URI or key=value) as given; only host/port are
    swapped for the endpoint and the probe's statement_timeout is added."""
    out: dict[str, Any] = {"given": True, "source": source, "ok": False, "error": None}
    try:
        params = conninfo.conninfo_to_dict(value)
    except psycopg.Error as exc:
        out["error"] = f"libpq cannot parse it: {error_text(exc)}"
        return out
    if t.secret_host is not None:
        out["parsed"] = {k: params.get(k) for k in ("host", "port", "dbname", "user")}
        out["expected"] = {
            "host": t.secret_host,
            "port": str(t.secret_port if t.secret_port is not None else t.port),
            "dbname": t.database,
            "user": t.user,
        }
    params.pop("hostaddr", None)
    params["host"], params["port"] = t.host, str(t.port)
    params.setdefault("connect_timeout", t.connect_timeout_s)
    params.setdefault("application_name", APPLICATION_NAME)
    # The timeout every other connection has, after any `options` the uri carries (the later
    # `-c` wins): no statement of the probe may hang, whatever the uri says.
    params["options"] = " ".join(
        o for o in (params.get("options"), common["options"]) if isinstance(o, str) and o
    )
    try:
        with _connect(psycopg, **params, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(uri_sql)
            row = cur.fetchone()
    except psycopg.Error as exc:
        out.update(error_facts(exc))
        return out
    out.update(ok=True, current_user=row[0] if row else None, database=row[1] if row else None)
    return out


def _try_database(t: DirectTarget, db: str, common: dict[str, Any], psycopg: Any) -> dict[str, Any]:
    try:
        conn = _connect(
            psycopg, host=t.host, port=t.port, dbname=db, user=t.user, password=t.password, **common
        )
    except psycopg.Error as exc:
        return {"database": db, "connected": False, **error_facts(exc)}
    conn.close()
    return {"database": db, "connected": True, "error": None}

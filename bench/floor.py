"""The physical floor: the same PostgreSQL work as the program, as raw SQL in one psycopg session.

Per app, with the components' SQL semantics (postgres_apps/app_database.py):
  CREATE ROLE … LOGIN PASSWORD … NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
      CONNECTION LIMIT 20
  CREATE DATABASE … OWNER …
  REVOKE CONNECT, TEMPORARY ON DATABASE … FROM PUBLIC
  GRANT CONNECT ON DATABASE … TO …
and the cleanup (DROP DATABASE … WITH (FORCE), DROP ROLE …). One autocommit connection (CREATE
DATABASE cannot run in a transaction), statements one after the other: nothing the engine does can
be cheaper than this on the same server.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

PREFIX = "bench"
"""Every app the benchmark creates is named `bench-…` (role/database `bench_…`)."""


def app_names(kind: str, n: int) -> list[str]:
    """`bench-<kind>-001` … : valid app names, sorted, and distinct per kind."""
    return [f"{PREFIX}-{kind}-{i:03d}" for i in range(1, n + 1)]


def ident(app: str) -> str:
    return app.replace("-", "_")


def create_statements(app: str, password: str, connection_limit: int = 20) -> list[sql.Composed]:
    name = sql.Identifier(ident(app))
    return [
        sql.SQL(
            "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS CONNECTION LIMIT {}"
        ).format(name, sql.Literal(password), sql.Literal(connection_limit)),
        sql.SQL("CREATE DATABASE {} OWNER {}").format(name, name),
        sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(name),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(name, name),
    ]


def drop_statements(app: str) -> list[sql.Composed]:
    name = sql.Identifier(ident(app))
    return [
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name),
        sql.SQL("DROP ROLE IF EXISTS {}").format(name),
    ]


STATEMENT_KINDS = ("create role", "create database", "revoke", "grant")


@dataclass
class FloorRun:
    """One floor measurement: seconds to create every app, to drop them, and per statement kind."""

    create_s: float
    cleanup_s: float
    by_statement_s: dict[str, float] = field(default_factory=dict)


def measure(conn: psycopg.Connection[Any], apps: Sequence[str]) -> FloorRun:
    """Create every app (statements one after the other), then drop them all, in one session."""
    passwords = {app: secrets.token_urlsafe(30) for app in apps}
    by_kind = dict.fromkeys(STATEMENT_KINDS, 0.0)
    start = time.perf_counter()
    for app in apps:
        for kind, stmt in zip(STATEMENT_KINDS, create_statements(app, passwords[app]), strict=True):
            t = time.perf_counter()
            conn.execute(stmt)
            by_kind[kind] += time.perf_counter() - t
    created = time.perf_counter() - start
    start = time.perf_counter()
    for app in apps:
        for stmt in drop_statements(app):
            conn.execute(stmt)
    dropped = time.perf_counter() - start
    return FloorRun(created, dropped, {k: round(v, 4) for k, v in by_kind.items()})


def leftovers(conn: psycopg.Connection[Any]) -> tuple[list[str], list[str]]:
    """Databases and roles named like the benchmark's (`bench_%`), left by an interrupted run."""
    dbs = [
        r[0]
        for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (f"{PREFIX}\\_%",)
        ).fetchall()
    ]
    roles = [
        r[0]
        for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1", (f"{PREFIX}\\_%",)
        ).fetchall()
    ]
    return dbs, roles


def sweep(conn: psycopg.Connection[Any]) -> int:
    """Drop every `bench_%` database and role (only the benchmark's own names); return the count."""
    dbs, roles = leftovers(conn)
    for db in dbs:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
    for role in roles:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    return len(dbs) + len(roles)


def gate_ingredients(
    admin: psycopg.Connection[Any],
    connect_kwargs: dict[str, Any],
    n: int,
    sample: int = 60,
) -> dict[str, Any]:
    """What the gate's isolation check costs on this server, measured piecewise.

    With `n` apps provisioned (floor SQL), times: a login of an app role to its own database; a
    login to another app's database (refused after authentication: no CONNECT); and the
    one-query alternative, `has_database_privilege` over pg_database as the app role. The direct
    probe tries every other app's database, so a whole gate costs n*(n-1) refused logins.
    """
    apps = app_names("gate", n)
    passwords = {app: secrets.token_urlsafe(30) for app in apps}
    for app in apps:
        for stmt in create_statements(app, passwords[app]):
            admin.execute(stmt)
    try:
        own: list[float] = []
        refused: list[float] = []
        query: list[float] = []
        for i in range(sample):
            app = apps[i % n]
            other = apps[(i + 1) % n]
            login = {**connect_kwargs, "user": ident(app), "password": passwords[app]}
            t = time.perf_counter()
            with psycopg.connect(**login, dbname=ident(app), autocommit=True) as conn:
                own.append(time.perf_counter() - t)
                t = time.perf_counter()
                rows = conn.execute(
                    "SELECT datname FROM pg_database "
                    "WHERE datallowconn AND has_database_privilege(datname, 'CONNECT')"
                ).fetchall()
                query.append(time.perf_counter() - t)
                if [r[0] for r in rows if r[0].startswith(f"{PREFIX}_")] != [ident(app)]:
                    raise RuntimeError(f"isolation broken on the floor: {rows}")
            if n > 1:
                t = time.perf_counter()
                try:
                    psycopg.connect(**login, dbname=ident(other)).close()
                except psycopg.OperationalError:
                    refused.append(time.perf_counter() - t)
                else:
                    raise RuntimeError(f"{app} could connect to {other}: floor SQL is wrong")
    finally:
        for app in apps:
            for stmt in drop_statements(app):
                admin.execute(stmt)
    own_ms = 1000 * sorted(own)[len(own) // 2]
    refused_ms = 1000 * sorted(refused)[len(refused) // 2] if refused else 0.0
    query_ms = 1000 * sorted(query)[len(query) // 2]
    return {
        "apps": n,
        "sample": sample,
        "own_login_ms_p50": round(own_ms, 2),
        "refused_login_ms_p50": round(refused_ms, 2),
        "privilege_query_ms_p50": round(query_ms, 3),
        "isolation_by_logins_s": round(n * (n - 1) * refused_ms / 1000, 2),
        "isolation_by_query_s": round(n * query_ms / 1000, 3),
    }

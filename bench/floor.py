"""The physical floor: the same PostgreSQL work as the program, as raw SQL in one psycopg session.

Per app, with the components' SQL semantics (components/app_database.py):
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

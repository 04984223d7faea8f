"""The admin pre-flight against a real PostgreSQL 15 (tests/integration/pg_server.py)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from psycopg import sql

from postgres_apps.config import parse_settings
from postgres_apps.preflight import (
    APPLICATION_NAME,
    BUDGET_RUNBOOK_SECTION,
    RUNBOOK_SECTION,
    AdminEndpoint,
    AdminPreflightError,
    ConnectionBudget,
    connection_budget,
    run_preflight,
)

from .pg_server import PgServer, free_port

pytestmark = pytest.mark.integration

SOURCE = "Secret data/postgres-postgresql key postgres-password"
SMALL = ConnectionBudget(apps=(), warn_percent=80)
"""No apps: the tests of the login itself need no budget."""


def endpoint(pg: PgServer, **changes: object) -> AdminEndpoint:
    ep = AdminEndpoint(
        host=pg.host,
        port=pg.port,
        user=pg.admin_user,
        sslmode="disable",
        connect_timeout=5,
        password_source=SOURCE,
    )
    return replace(ep, **changes)  # type: ignore[arg-type]


def refused(ep: AdminEndpoint, password: str, budget: ConnectionBudget = SMALL) -> str:
    with pytest.raises(AdminPreflightError) as err:
        run_preflight(ep, password, budget)
    text = str(err.value)
    assert ep.address in text and f'user "{ep.user}"' in text, text
    assert RUNBOOK_SECTION in text, text
    assert password not in text, text
    return text


@pytest.fixture
def plain_role(pg: PgServer) -> Iterator[tuple[str, str]]:
    """A LOGIN role that is not a superuser (but may create roles and databases).

    The session server is hardened (PUBLIC has no CONNECT on `postgres`), so the role gets
    CONNECT there by name: the pre-flight must get as far as its superuser question."""
    name = f"it_pf_{os.getpid()}_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    role = sql.Identifier(name)
    pg.execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
            role, sql.Literal(password)
        ),
        sql.SQL("GRANT CONNECT ON DATABASE postgres TO {}").format(role),
    )
    try:
        yield name, password
    finally:
        pg.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE postgres FROM {}").format(role),
            sql.SQL("DROP ROLE IF EXISTS {}").format(role),
        )


def test_good_credentials_return_the_version(pg: PgServer) -> None:
    facts = run_preflight(endpoint(pg), pg.admin_password, SMALL)
    assert 150000 <= facts.version_num < 160000  # the tier's PostgreSQL 15
    assert facts.version.startswith("15.")
    assert facts.superuser is True


def test_the_preflight_leaves_no_session_behind(pg: PgServer) -> None:
    run_preflight(endpoint(pg), pg.admin_password, SMALL)
    with pg.admin() as conn:
        deadline = time.monotonic() + 5
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchone()
            if row == (0,) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert row == (0,)


def test_wrong_password_is_refused_naming_the_secret_and_the_config_key(pg: PgServer) -> None:
    wrong = "itWrong" + secrets.token_hex(8)
    text = refused(endpoint(pg), wrong)
    assert 'password authentication failed for user "postgres"' in text
    assert SOURCE in text
    assert "postgres-apps:adminPassword" in text and "postgres-apps:postgres.adminUser" in text


def test_wrong_user_is_refused_naming_the_user_key(pg: PgServer) -> None:
    text = refused(endpoint(pg, user="it_no_such_admin"), pg.admin_password)
    assert 'password authentication failed for user "it_no_such_admin"' in text
    assert "postgres-apps:postgres.adminUser" in text
    # the real admin password never appears, not even in fragments
    assert pg.admin_password[:8] not in text


def test_non_superuser_is_refused(pg: PgServer, plain_role: tuple[str, str]) -> None:
    name, password = plain_role
    text = refused(endpoint(pg, user=name), password)
    assert f'user "{name}" is not a superuser' in text
    assert "superuser=True" in text and "postgres-apps:postgres.adminUser" in text


def test_unreachable_port_is_refused_naming_host_and_port_keys(pg: PgServer) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    text = refused(endpoint(pg, port=port), pg.admin_password)
    assert time.monotonic() - started < 5  # refused at once, not after connect_timeout
    assert "Connection refused" in text
    assert "postgres-apps:postgres.adminHost" in text and "postgres-apps:postgres.adminPort" in text
    assert "port-forward" in text


def test_tls_required_but_server_without_tls_names_the_sslmode_key(pg: PgServer) -> None:
    text = refused(endpoint(pg, sslmode="require"), pg.admin_password)
    assert "SSL" in text
    assert "postgres-apps:postgres.adminSslmode" in text


# ---------------------------------------------------------------------------------------------
# Connection budget (the session server runs with max_connections=50: pg_server.py)


def _setting(pg: PgServer, name: str) -> int:
    with pg.admin() as conn:
        row = conn.execute("SELECT current_setting(%s)::int", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def _budget(*limits: int, warn: int = 80) -> ConnectionBudget:
    """As the program builds it from `postgres-apps:apps` (`preflight.connection_budget`)."""
    apps = [{"name": f"it-budget-{i}", "connectionLimit": n} for i, n in enumerate(limits)]
    raw = {"apps": apps, "postgres": {"connectionBudgetWarnPercent": warn}}
    return connection_budget(parse_settings(raw))


def _server_state(pg: PgServer) -> list[tuple[object, ...]]:
    """Roles, databases and their ACLs, and the server's settings that this check reads."""
    with pg.admin() as conn:
        return [
            *conn.execute(
                "SELECT rolname, rolconnlimit, rolcanlogin FROM pg_roles ORDER BY 1"
            ).fetchall(),
            *conn.execute(
                "SELECT datname, datacl::text, datconnlimit FROM pg_database ORDER BY 1"
            ).fetchall(),
            *conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name LIKE '%connections' ORDER BY 1"
            ).fetchall(),
        ]


def test_the_probe_reads_the_servers_connection_settings(pg: PgServer) -> None:
    """PostgreSQL 15: max_connections and superuser_reserved_connections, no
    reserved_connections (16+): read in the pre-flight's one query."""
    facts = run_preflight(endpoint(pg), pg.admin_password, SMALL)
    conn = facts.connections
    assert conn.max_connections == _setting(pg, "max_connections") == 50
    assert conn.superuser_reserved_connections == _setting(pg, "superuser_reserved_connections")
    assert conn.reserved_connections is None
    assert conn.available == 50 - conn.superuser_reserved_connections


def test_an_over_budget_stack_is_refused_with_the_real_numbers(pg: PgServer) -> None:
    reserved = _setting(pg, "superuser_reserved_connections")
    available = 50 - reserved
    before = _server_state(pg)
    text = refused(endpoint(pg), pg.admin_password, _budget(30, available - 30 + 1))
    print(text)  # the message as an operator reads it (pytest -s)
    assert (
        f"connection budget exceeded: the apps' connection limits add up to {available + 1} "
        f"(it-budget-0 30, it-budget-1 {available - 29}) but PostgreSQL at {pg.host}:{pg.port} "
        f"allows {available} non-superuser connections (max_connections 50 - "
        f"superuser_reserved_connections {reserved}; no reserved_connections before PostgreSQL "
        "16), 1 too many. Lower postgres-apps:apps[0].connectionLimit "
        "(it-budget-0 30)"
    ) in text
    assert "primary.extendedConfiguration" in text and BUDGET_RUNBOOK_SECTION in text
    assert "No role, database, grant or app Secret was touched" in text
    assert _server_state(pg) == before


def test_exactly_the_budget_passes_with_a_warning(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pulumi  # noqa: PLC0415

    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warned.append(msg))
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *a, **k: None)
    available = 50 - _setting(pg, "superuser_reserved_connections")
    run_preflight(endpoint(pg), pg.admin_password, _budget(20, available - 20))
    assert len(warned) == 1
    assert f"add up to {available} " in warned[0] and "100% of the" in warned[0]
    assert "postgres-apps:postgres.connectionBudgetWarnPercent 80%" in warned[0]

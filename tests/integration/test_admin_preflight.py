"""The admin pre-flight against a real PostgreSQL 15 (tests/integration/pg_server.py)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from psycopg import sql

from components.preflight import (
    APPLICATION_NAME,
    RUNBOOK_SECTION,
    AdminEndpoint,
    AdminPreflightError,
    run_preflight,
)

from .pg_server import PgServer, free_port

pytestmark = pytest.mark.integration

SOURCE = "Secret data/postgres-postgresql key postgres-password"


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


def refused(ep: AdminEndpoint, password: str) -> str:
    with pytest.raises(AdminPreflightError) as err:
        run_preflight(ep, password)
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
    facts = run_preflight(endpoint(pg), pg.admin_password)
    assert 150000 <= facts.version_num < 160000  # the tier's PostgreSQL 15
    assert facts.version.startswith("15.")
    assert facts.superuser is True


def test_the_preflight_leaves_no_session_behind(pg: PgServer) -> None:
    run_preflight(endpoint(pg), pg.admin_password)
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

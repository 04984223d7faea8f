"""The unmanaged report against a real PostgreSQL 15: hand-made objects show up, managed and
system ones do not, on both paths (the pre-flight's session on `up`, the preview's survey)."""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from psycopg import sql

from postgres_apps.inventory import (
    QUERY,
    Scope,
    Unmanaged,
    classify,
    from_preflight,
    read_objects,
    survey,
)
from postgres_apps.preflight import (
    AdminEndpoint,
    ConnectionBudget,
    admin_connection,
    run_preflight,
)
from postgres_apps.settings import UnmanagedSettings

from .helpers import AppPair
from .pg_server import PgServer, free_port

pytestmark = pytest.mark.integration


def endpoint(pg: PgServer) -> AdminEndpoint:
    return AdminEndpoint(
        host=pg.host,
        port=pg.port,
        user=pg.admin_user,
        sslmode="disable",
        connect_timeout=5,
        password_source="Secret data/postgres-postgresql key postgres-password",
    )


def scope(apps: AppPair, ignore: UnmanagedSettings | None = None) -> Scope:
    return Scope(
        roles=frozenset({apps.app.role, apps.other.role}),
        databases=frozenset({apps.app.database, apps.other.database}),
        admin_user="postgres",
        ignore=ignore or UnmanagedSettings(),
    )


@dataclass(frozen=True)
class HandMade:
    login_role: str
    group_role: str
    database: str
    quoted_database: str

    @property
    def roles(self) -> set[str]:
        return {self.login_role, self.group_role}

    @property
    def databases(self) -> set[str]:
        return {self.database, self.quoted_database}


@pytest.fixture
def hand_made(pg: PgServer) -> Iterator[HandMade]:
    """What an operator's manual set-up leaves: a login role, a NOLOGIN group role, a database
    it owns, and a quoted mixed-case database."""
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    made = HandMade(
        login_role=f"app_user_{tag}",
        group_role=f"readers_{tag}",
        database=f"app_test_db_{tag}",
        quoted_database=f"Legacy DB {tag}",
    )
    pg.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(made.login_role), sql.Literal(secrets.token_urlsafe(16))
        ),
        sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(made.group_role)),
        sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(made.database), sql.Identifier(made.login_role)
        ),
        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(made.quoted_database)),
    )
    try:
        yield made
    finally:
        pg.execute(
            *(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(d))
                for d in sorted(made.databases)
            ),
            *(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(r)) for r in made.roles),
        )


def _baseline(pg: PgServer, apps: AppPair) -> Unmanaged:
    """What the shared session server already holds unmanaged (other tests' objects)."""
    with admin_connection(endpoint(pg), pg.admin_password) as conn:
        return classify(read_objects(conn), scope(apps))


def test_up_path_reports_exactly_the_hand_made_objects(
    pg: PgServer, apps: AppPair, hand_made: HandMade
) -> None:
    before = _baseline_without(pg, apps, hand_made)
    facts = run_preflight(endpoint(pg), pg.admin_password, ConnectionBudget((), warn_percent=80))
    assert facts.objects is not None, facts.objects_error
    # the same call read the connection settings the budget is judged on
    assert facts.connections.available > 0
    report = from_preflight(facts, scope(apps), endpoint(pg), pg.admin_password)
    assert report.checked is True
    assert set(report.roles) - set(before.roles) == hand_made.roles
    assert set(report.databases) - set(before.databases) == hand_made.databases
    named = set(report.roles) | set(report.databases)
    assert not {apps.app.role, apps.other.role, apps.app.database, apps.other.database} & named
    assert not {n for n in report.roles if n.startswith("pg_")}
    assert "postgres" not in report.roles
    assert not {"postgres", "template0", "template1"} & set(report.databases)
    # the server really has what was left out: the exclusions are doing the work
    all_names = {o.name for o in facts.objects}
    assert {"pg_monitor", "postgres", "template0", "template1", apps.app.role} <= all_names


def _baseline_without(pg: PgServer, apps: AppPair, made: HandMade) -> Unmanaged:
    base = _baseline(pg, apps)
    return Unmanaged(
        checked=True,
        roles=tuple(r for r in base.roles if r not in made.roles),
        databases=tuple(d for d in base.databases if d not in made.databases),
    )


def test_preview_survey_reports_the_same_and_honours_the_ignore_lists(
    pg: PgServer, apps: AppPair, hand_made: HandMade
) -> None:
    before = _baseline_without(pg, apps, hand_made)
    ignore = UnmanagedSettings(
        ignore_roles=(hand_made.group_role,), ignore_databases=(hand_made.quoted_database,)
    )
    report = survey(endpoint(pg), pg.admin_password, scope(apps, ignore))
    assert report.checked is True
    assert set(report.roles) - set(before.roles) == {hand_made.login_role}
    assert set(report.databases) - set(before.databases) == {hand_made.database}


def test_preview_survey_of_an_unreachable_endpoint_says_not_checked(pg: PgServer) -> None:
    ep = replace(endpoint(pg), port=free_port())
    empty = Scope(frozenset(), frozenset(), "postgres")
    started = time.monotonic()
    report = survey(ep, pg.admin_password, empty)
    assert time.monotonic() - started < 10
    assert report.checked is False
    assert report.reason is not None
    assert report.reason.startswith(f"the preview could not read {ep.address}: ")
    assert pg.admin_password not in report.reason


def test_preview_survey_with_a_wrong_password_says_not_checked(pg: PgServer) -> None:
    wrong = "Not-The-Admin-Password-" + secrets.token_hex(4)
    report = survey(endpoint(pg), wrong, Scope(frozenset(), frozenset(), "postgres"))
    assert report.checked is False
    assert report.reason is not None
    assert "password authentication failed" in report.reason
    assert wrong not in report.reason


def test_the_query_is_cheap(
    pg: PgServer, apps: AppPair, capsys: pytest.CaptureFixture[str]
) -> None:
    """One statement; its time on the tier's server is printed (docs/benchmarks.md quotes it)."""
    with admin_connection(endpoint(pg), pg.admin_password) as conn:
        conn.execute(QUERY).fetchall()  # warm the catalog caches once
        times = []
        for _ in range(50):
            started = time.perf_counter()
            rows = read_objects(conn)
            times.append((time.perf_counter() - started) * 1000)
    median = statistics.median(times)
    with capsys.disabled():
        print(
            f"\ninventory QUERY: {len(rows)} rows, median {median:.3f} ms, "
            f"max {max(times):.3f} ms over 50 runs"
        )
    assert len(rows) >= 4
    assert median < 50, times

"""Isolation against a real PostgreSQL 15, both runners: each part of the check fails on the
fault it is about, with a message naming the offender, and the cost stays O(1) per app.

Parts (see `checks.judge_isolation`): outbound (peer databases this role may CONNECT to),
inbound (peer roles, or PUBLIC, that may CONNECT to this app's database), and one real login to
one peer database that must be refused with "permission denied for database".
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from psycopg import sql

from components.verification.checks import RUNBOOK, refused_login_database

from .helpers import RUNNERS, AppPair, outcome, peers_of, run
from .pg_server import PgServer, ProvisionedApp, drop_app, provision_app

pytestmark = pytest.mark.integration


def grant_connect(pg: PgServer, database: str, grantee: str) -> None:
    target = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
    pg.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), target)
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_public_connect_on_a_peer_database_fails_both_directions(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    grant_connect(pg, apps.other.database, "PUBLIC")

    # the peer's own check: PUBLIC may connect to its database (inbound)
    theirs = run(runner, pg, apps.other, peers_of([apps.app]))
    assert [c.name for c in theirs.failed] == ["isolation"]
    iso = outcome(theirs, "isolation")
    # (through PUBLIC every peer role may connect too: both are named)
    assert iso.message == (
        f'PUBLIC holds CONNECT on this app\'s database "{apps.other.database}"; '
        f"other apps' roles can connect to this app's database \"{apps.other.database}\" "
        f'(PUBLIC\'s grant covers them): "{apps.app.role}"'
    )
    assert f"FROM {apps.app.role}" not in iso.hint  # PUBLIC's grant is the one to remove
    assert f"REVOKE CONNECT, TEMPORARY ON DATABASE {apps.other.database} FROM PUBLIC" in iso.hint
    assert iso.hint.endswith(f"{RUNBOOK}#isolation")

    # the app's check: it can reach the peer's database (outbound), and the login was not refused
    mine = run(runner, pg, apps.app, peers_of([apps.other]))
    assert [c.name for c in mine.failed] == ["isolation"]
    assert outcome(mine, "isolation").message == (
        f'the app can connect to other apps\' databases: "{apps.other.database}"'
    )
    assert mine.report["isolation"]["refused_login"]["connected"] is True


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_peer_role_granted_connect_on_my_database_fails_inbound(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    grant_connect(pg, apps.app.database, apps.other.role)

    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    assert [c.name for c in verdict.failed] == ["isolation"]
    iso = outcome(verdict, "isolation")
    assert iso.message == (
        f"other apps' roles can connect to this app's database \"{apps.app.database}\": "
        f'"{apps.other.role}"'
    )
    assert f"REVOKE CONNECT ON DATABASE {apps.app.database} FROM {apps.other.role}" in iso.hint
    # PUBLIC still has nothing, and the app itself still cannot reach the peer
    assert verdict.report["isolation"]["inbound"]["public_connect"] is False
    assert verdict.report["isolation"]["outbound"]["reachable"] == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_peer_that_does_not_exist_cannot_be_proven(runner: str, pg: PgServer) -> None:
    app = provision_app(pg, f"iso-{os.getpid()}-{runner}-lone")
    ghost = ProvisionedApp(name="ghost", role="zz_ghost_role", database="zz_ghost_db", password="x")
    try:
        verdict = run(runner, pg, app, peers_of([ghost]))
    finally:
        drop_app(pg, app)

    iso = outcome(verdict, "isolation")
    assert iso.status == "fail"
    assert 'peers unknown to the server: "zz_ghost_db", "zz_ghost_role"' in iso.message
    assert "could not prove isolation (expected 'permission denied for database')" in iso.message
    assert 'database "zz_ghost_db" does not exist' in iso.message


@pytest.mark.parametrize("runner", RUNNERS)
def test_no_peers_passes(runner: str, pg: PgServer) -> None:
    app = provision_app(pg, f"iso-{os.getpid()}-{runner}-solo")
    try:
        verdict = run(runner, pg, app, [])
    finally:
        drop_app(pg, app)
    assert verdict.ok, verdict.to_json()["checks"]
    assert outcome(verdict, "isolation").message == "no other app databases"


# -- scale: 50 peers, O(1) round trips and ONE refused login per check ----------------------------

PEERS = 50


@pytest.fixture(scope="module")
def crowd(pg: PgServer) -> Iterator[list[ProvisionedApp]]:
    apps = [provision_app(pg, f"crowd-{os.getpid()}-{i:03d}") for i in range(PEERS + 1)]
    try:
        yield apps
    finally:
        for a in apps:
            drop_app(pg, a)


def refused_logins_logged(pg: PgServer) -> int:
    """FATAL 'permission denied for database' lines in the server log so far."""
    return pg.logfile.read_text(errors="replace").count("permission denied for database")


@pytest.mark.parametrize("runner", RUNNERS)
def test_fifty_peers_cost_one_refused_login(
    runner: str, pg: PgServer, crowd: list[ProvisionedApp]
) -> None:
    app, peers = crowd[0], crowd[1:]
    before = refused_logins_logged(pg)
    start = time.perf_counter()
    verdict = run(runner, pg, app, peers_of(peers))
    elapsed = time.perf_counter() - start

    assert verdict.ok, verdict.to_json()["checks"]
    iso = verdict.report["isolation"]
    assert iso["peers"] == PEERS
    expected = refused_login_database(app.database, [p.database for p in peers])
    assert iso["refused_login"]["database"] == expected == peers[0].database
    # The server saw exactly one refused login from this check (not one per peer).
    assert refused_logins_logged(pg) - before == 1
    print(f"\n[isolation scale] {runner}: one check with {PEERS} peers took {elapsed:.3f} s")


def test_fifty_peers_with_one_leak_names_it(pg: PgServer, crowd: list[ProvisionedApp]) -> None:
    app, peers = crowd[0], crowd[1:]
    leaky = peers[37]
    grant_connect(pg, leaky.database, app.role)
    try:
        verdict = run("direct", pg, app, peers_of(peers))
    finally:
        pg.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                sql.Identifier(leaky.database), sql.Identifier(app.role)
            )
        )
    assert outcome(verdict, "isolation").message == (
        f'the app can connect to other apps\' databases: "{leaky.database}"'
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_unreadable_catalog_fails_isolation_alone(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    """The isolation query shares the session with the role's facts: its failure is its own."""
    # catalog ACLs live in each database's pg_class: revoke where the app's session runs
    pg.execute("REVOKE SELECT ON pg_catalog.pg_database FROM PUBLIC", dbname=apps.app.database)
    try:
        verdict = run(runner, pg, apps.app, peers_of([apps.other]))
    finally:
        pg.execute("GRANT SELECT ON pg_catalog.pg_database TO PUBLIC", dbname=apps.app.database)

    assert [c.name for c in verdict.failed] == ["isolation"], verdict.to_json()["checks"]
    assert outcome(verdict, "privileges").status == "pass"
    iso = outcome(verdict, "isolation")
    assert iso.message.startswith("could not query the privileges: ")
    assert "permission denied for table pg_database" in iso.message
    assert verdict.report["isolation"]["refused_login"] is None

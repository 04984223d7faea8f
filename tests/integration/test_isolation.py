"""Isolation against a real PostgreSQL 15, both runners: each part of the check fails on the
fault it is about, with a message naming the offender, and the cost stays O(1) per app.

Parts (see `checks.judge_isolation`): outbound (every database other than the app's own that
accepts connections and is not allow-listed, and that this role may CONNECT to), inbound (peer
roles, or PUBLIC, that may CONNECT to this app's database), and one real login to one database
the query says is closed, which must be refused with "permission denied for database".

The session server `pg` is hardened as the stack hardens it
(`postgres_apps.server_hardening.HARDEN_SQL`); the tests about the default server start their own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from postgres_apps.server_hardening import HARDEN_SQL
from postgres_apps.verification.runbook import RUNBOOK

from .helpers import RUNNERS, AppPair, outcome, peers_of, run
from .pg_server import PgServer, ProvisionedApp, drop_app, harden, provision_app

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

    # the app's check: it can reach the peer's database (outbound); the refused login goes to a
    # database the query saw closed (postgres), not to the one it already reported
    mine = run(runner, pg, apps.app, peers_of([apps.other]))
    assert [c.name for c in mine.failed] == ["isolation"]
    assert outcome(mine, "isolation").message == (
        f'the app can connect to databases other than its own: "{apps.other.database}"'
    )
    assert mine.report["isolation"]["refused_login"]["database"] == "postgres"
    assert mine.report["isolation"]["refused_login"]["connected"] is False


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
    assert iso.message == 'peers unknown to the server: "zz_ghost_db", "zz_ghost_role"'
    # the login target is chosen from the server's databases: the hardened postgres
    assert verdict.report["isolation"]["refused_login"]["database"] == "postgres"


@pytest.mark.parametrize("runner", RUNNERS)
def test_no_peers_passes(runner: str, pg: PgServer) -> None:
    app = provision_app(pg, f"iso-{os.getpid()}-{runner}-solo")
    try:
        verdict = run(runner, pg, app, [])
    finally:
        drop_app(pg, app)
    assert verdict.ok, verdict.to_json()["checks"]
    # without peers the check still covers the server's other databases and proves one login
    message = outcome(verdict, "isolation").message
    assert message.startswith("0 other apps, ")
    assert message.endswith('; login to "postgres" refused')


# -- scale: 50 peers + 5 unmanaged databases, O(1) round trips and ONE refused login per check --

PEERS = 50
UNMANAGED = 5


@pytest.fixture(scope="module")
def crowd(pg: PgServer) -> Iterator[list[ProvisionedApp]]:
    apps = [provision_app(pg, f"crowd-{os.getpid()}-{i:03d}") for i in range(PEERS + 1)]
    extra = [f"unmanaged_{os.getpid()}_{i}" for i in range(UNMANAGED)]
    for name in extra:  # databases no app owns, closed to PUBLIC (as hardenDatabases would)
        db = sql.Identifier(name)
        pg.execute(
            sql.SQL("CREATE DATABASE {}").format(db),
            sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
        )
    try:
        yield apps
    finally:
        for a in apps:
            drop_app(pg, a)
        for name in extra:
            pg.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


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
    # every database but its own and template0: the peers, the unmanaged ones, postgres, template1
    assert iso["outbound"]["checked"] >= PEERS + UNMANAGED + 2
    # the next peer database after its own in sorted order (crowd[0] sorts first)
    assert iso["refused_login"]["database"] == peers[0].database
    # The server saw exactly one refused login from this check (not one per database).
    assert refused_logins_logged(pg) - before == 1
    print(
        f"\n[isolation scale] {runner}: one check with {PEERS} peers + {UNMANAGED} unmanaged "
        f"databases took {elapsed:.3f} s"
    )


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
        f'the app can connect to databases other than its own: "{leaky.database}"'
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


# -- every database on the server, not only the managed peers -----------------------------------


def can_connect(server: PgServer, app: ProvisionedApp, database: str) -> bool:
    """A real login of the app's role to `database` (what the check reports, proven by hand)."""
    try:
        psycopg.connect(
            **server.conninfo(user=app.role, password=app.password, dbname=database)
        ).close()
    except psycopg.OperationalError as exc:
        assert "permission denied for database" in str(exc), exc
        return False
    return True


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_default_server_fails_on_postgres_and_template1_until_hardened(runner: str) -> None:
    """(a) PUBLIC's default CONNECT/TEMPORARY on postgres and template1 are found and named;
    (b) after the stack's REVOKE (HARDEN_SQL) the same app passes."""
    server = PgServer.start()  # as initdb leaves it: nothing hardened
    try:
        app = provision_app(server, "fresh-app")
        # what the check is about to report, done by hand: the app role connects to postgres and
        # creates a temporary table there
        with psycopg.connect(
            **server.conninfo(user=app.role, password=app.password, dbname="postgres")
        ) as conn:
            conn.execute("CREATE TEMP TABLE planted (x int)")

        verdict = run(runner, server, app, [])

        assert [c.name for c in verdict.failed] == ["isolation"], verdict.to_json()["checks"]
        iso = outcome(verdict, "isolation")
        # (initdb itself revokes TEMPORARY on template1 from PUBLIC; CONNECT stays)
        assert iso.message == (
            'the app can connect to databases other than its own: "postgres", "template1"; '
            'it may also create temporary tables in: "postgres"'
        )
        assert iso.hint.startswith(
            "revoke it: REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC "
            "(and FROM fresh_app); list the databases no app owns in "
            "postgres-apps:postgres.hardenDatabases, or a database the app may use on purpose in "
            "postgres-apps:verification.allowedDatabases"
        )
        assert iso.hint.endswith(f"{RUNBOOK}#isolation")
        # nothing is closed to it: no refused login to prove
        assert verdict.report["isolation"]["refused_login"] is None

        harden(server)

        after = run(runner, server, app, [])
        assert after.ok, after.to_json()["checks"]
        assert outcome(after, "isolation").message == (
            "0 other apps, 2 other databases that accept connections: none reachable, no other "
            'app\'s role (nor PUBLIC) may connect here; login to "postgres" refused'
        )
        assert not can_connect(server, app, "postgres")
        assert not can_connect(server, app, "template1")
    finally:
        server.stop()


def test_harden_sql_is_the_stack_statement() -> None:
    assert HARDEN_SQL == "REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC"


@pytest.fixture
def unmanaged(pg: PgServer) -> Iterator[str]:
    """A database created by hand by the admin, with the default ACL (PUBLIC: CONNECT, TEMP)."""
    name = f"reporting_{os.getpid()}"
    pg.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        pg.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_unmanaged_database_fails_unless_allowed(
    runner: str, pg: PgServer, apps: AppPair, unmanaged: str
) -> None:
    """(c) a database no app owns, open to PUBLIC, is named; (d) allow-listed it passes."""
    assert can_connect(pg, apps.app, unmanaged)

    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    assert [c.name for c in verdict.failed] == ["isolation"]
    iso = outcome(verdict, "isolation")
    assert iso.message == (
        f'the app can connect to databases other than its own: "{unmanaged}"; '
        f'it may also create temporary tables in: "{unmanaged}"'
    )
    assert f"REVOKE CONNECT, TEMPORARY ON DATABASE {unmanaged} FROM PUBLIC" in iso.hint

    allowed = run(runner, pg, apps.app, peers_of([apps.other]), allowed=[unmanaged])

    assert allowed.ok, allowed.to_json()["checks"]
    message = outcome(allowed, "isolation").message
    assert f'none reachable (allowed: "{unmanaged}")' in message
    assert f'login to "{apps.other.database}" refused' in message
    assert allowed.report["isolation"]["allowed"] == [unmanaged]


AWKWARD = "odd $(DB_PASSWORD) $$ 'q\" db\\x"
"""A database name with everything the statement's literal must carry unchanged: `$(…)` and `$$`
(the kubelet's expansion), quotes, a backslash (E'' strings), spaces."""


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_awkward_database_name_is_named_and_can_be_allowed(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    pg.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(AWKWARD)))
    try:
        verdict = run(runner, pg, apps.app, [])
        allowed = run(runner, pg, apps.app, [], allowed=[AWKWARD])
    finally:
        pg.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(AWKWARD)))

    iso = outcome(verdict, "isolation")
    assert iso.message.startswith(
        f'the app can connect to databases other than its own: "{AWKWARD}"'
    )
    quoted = '"' + AWKWARD.replace('"', '""') + '"'
    assert f"REVOKE CONNECT, TEMPORARY ON DATABASE {quoted} FROM PUBLIC" in iso.hint
    assert allowed.ok, allowed.to_json()["checks"]
    assert allowed.report["isolation"]["allowed"] == [AWKWARD]


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_app_granting_public_connect_on_its_own_database_is_caught(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    """(e) The app role owns its database, so it can open it to everyone by itself."""
    assert not can_connect(pg, apps.other, apps.app.database)
    with psycopg.connect(
        **pg.conninfo(user=apps.app.role, password=apps.app.password, dbname=apps.app.database),
        autocommit=True,
    ) as conn:
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(
                sql.Identifier(apps.app.database)
            )
        )
    # the hostile act works: the other app's role really connects to this app's database now
    assert can_connect(pg, apps.other, apps.app.database)

    verdict = run(runner, pg, apps.app, peers_of([apps.other]))

    assert [c.name for c in verdict.failed] == ["isolation"]
    iso = outcome(verdict, "isolation")
    assert iso.message == (
        f'PUBLIC holds CONNECT on this app\'s database "{apps.app.database}"; '
        f"other apps' roles can connect to this app's database \"{apps.app.database}\" "
        f'(PUBLIC\'s grant covers them): "{apps.other.role}"'
    )
    assert f"REVOKE CONNECT, TEMPORARY ON DATABASE {apps.app.database} FROM PUBLIC" in iso.hint
    # and the other app's own check sees this database as reachable from it
    theirs = run(runner, pg, apps.other, peers_of([apps.app]))
    assert outcome(theirs, "isolation").message == (
        f'the app can connect to databases other than its own: "{apps.app.database}"'
    )


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_database_that_refuses_connections_is_not_reported(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    """(f) datallowconn = false: the privilege is there (default ACL), a login is not possible."""
    name = f"closed_{os.getpid()}"
    db = sql.Identifier(name)
    pg.execute(sql.SQL("CREATE DATABASE {} ALLOW_CONNECTIONS false").format(db))
    try:
        with pg.admin(apps.app.database) as conn:
            row = conn.execute(
                "SELECT has_database_privilege(%s, %s, 'CONNECT')", (apps.app.role, name)
            ).fetchone()
        assert row == (True,)  # without the datallowconn filter it would be reported
        verdict = run(runner, pg, apps.app, peers_of([apps.other]))
    finally:
        pg.execute(sql.SQL("DROP DATABASE {}").format(db))

    assert verdict.ok, verdict.to_json()["checks"]
    assert name not in json.dumps(verdict.report["isolation"])


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_statement_reads_the_same_when_the_app_turns_off_standard_strings(
    runner: str, pg: PgServer, apps: AppPair
) -> None:
    """The app role may set its own session defaults; the statement's E'' literal does not care."""
    pg.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(AWKWARD)))
    try:
        with psycopg.connect(
            **pg.conninfo(user=apps.app.role, password=apps.app.password, dbname=apps.app.database),
            autocommit=True,
        ) as conn:
            conn.execute("ALTER ROLE CURRENT_USER SET standard_conforming_strings = off")
        verdict = run(runner, pg, apps.app, [], allowed=[AWKWARD])
    finally:
        pg.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(AWKWARD)))

    assert verdict.ok, verdict.to_json()["checks"]
    assert verdict.report["isolation"]["allowed"] == [AWKWARD]

"""Isolation: with app A's credentials (from its Secret), app B's database and tables are out of
reach. B first creates a table as its owner and writes a row, as a migration would.

Last, the gate under the real engine: adding app C runs C's check only (its isolation part proves
both directions against A and B); A's and B's checks stay unchanged, while the state records
their new peers list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pulumi import automation as auto

from tests.e2e.harness import ProjectStack, new_stack, secret_data
from tests.e2e.reliability_support import (
    admin_exec,
    connect_as,
    delete_namespaces,
    export_state,
    login_error,
    purge_leftovers,
    rel_config,
)

NAMESPACE = "rel-iso"
APPS: list[dict[str, Any]] = [
    {"name": "rel-is-a", "deletion": "drop"},
    {"name": "rel-is-b", "deletion": "drop"},
]


CHECK_TYPE = "pulumi-python:dynamic/verification:ConnectivityCheck"
APP_C: dict[str, Any] = {"name": "rel-is-c", "deletion": "drop"}


PLANTED = "rel_is_planted"
"""A table an attacker would plant in template1 for later databases to copy."""


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    purge_leftovers("rel_is_", NAMESPACE)
    # Planted before the apps' databases exist: a plain CREATE DATABASE would copy it.
    admin_exec(f"CREATE TABLE IF NOT EXISTS {PLANTED} (x int)", dbname="template1")
    s: ProjectStack = new_stack(tmp_path_factory.mktemp("iso"), "rel-iso")
    s.write_config(rel_config(APPS, NAMESPACE, rerun="on-change"))
    try:
        s.up()
        yield s
    finally:
        admin_exec(f"DROP TABLE IF EXISTS {PLANTED}", dbname="template1")
        try:
            s.stack.destroy(on_output=print, color="never")
            s.stack.workspace.remove_stack(s.name)
        finally:
            delete_namespaces(NAMESPACE)


@pytest.fixture(scope="module")
def creds(deployed: ProjectStack) -> dict[str, dict[str, str]]:
    creds = {a["name"]: secret_data(NAMESPACE, f"{a['name']}-db-credentials") for a in APPS}
    b = creds["rel-is-b"]
    with connect_as(b["user"], b["password"], b["dbname"]) as conn:
        conn.execute("CREATE TABLE b_private (secret_note text)")
        conn.execute("INSERT INTO b_private VALUES ('only for b')")
    return creds


def test_a_cannot_connect_to_bs_database(creds: dict[str, dict[str, str]]) -> None:
    a = creds["rel-is-a"]
    with pytest.raises(psycopg.OperationalError) as err:
        connect_as(a["user"], a["password"], creds["rel-is-b"]["dbname"]).close()
    # PostgreSQL's refusal and why (CONNECT revoked from PUBLIC), for exactly B's database
    b_db = creds["rel-is-b"]["dbname"]
    assert f'permission denied for database "{b_db}"' in str(err.value)
    assert "User does not have CONNECT privilege." in str(err.value)


def test_a_cannot_log_in_as_b(creds: dict[str, dict[str, str]]) -> None:
    a, b = creds["rel-is-a"], creds["rel-is-b"]
    with pytest.raises(psycopg.OperationalError) as err:
        connect_as(b["user"], a["password"], b["dbname"]).close()
    assert f'password authentication failed for user "{b["user"]}"' in str(err.value)


def test_a_cannot_become_b_nor_read_password_hashes(creds: dict[str, dict[str, str]]) -> None:
    a, b = creds["rel-is-a"], creds["rel-is-b"]
    with connect_as(a["user"], a["password"], a["dbname"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SET ROLE {b['user']}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rolpassword FROM pg_authid")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE rel_is_stolen")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE rel_is_stolen")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"GRANT CONNECT ON DATABASE {b['dbname']} TO {a['user']}")


@pytest.mark.parametrize("database", ["postgres", "template1", "template0"])
def test_a_cannot_connect_to_the_servers_own_databases(
    creds: dict[str, dict[str, str]], database: str
) -> None:
    """PUBLIC's default CONNECT on postgres/template1 is revoked by the stack's server hardening;
    template0 never accepts connections."""
    a = creds["rel-is-a"]
    with pytest.raises(psycopg.OperationalError) as err:
        connect_as(a["user"], a["password"], database).close()
    expected = (
        f'database "{database}" is not currently accepting connections'
        if database == "template0"
        else f'permission denied for database "{database}"'
    )
    assert expected in str(err.value), str(err.value)


def test_app_databases_do_not_copy_template1(creds: dict[str, dict[str, str]]) -> None:
    """App databases are created from template0: what was planted in template1 is not there."""
    a = creds["rel-is-a"]
    with connect_as(a["user"], a["password"], a["dbname"]) as conn:
        found = conn.execute("SELECT to_regclass(%s)::text", (f"public.{PLANTED}",)).fetchone()
    assert found == (None,)
    with connect_as(a["user"], a["password"], a["dbname"]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


def test_bs_tables_stay_unreadable_even_if_connect_were_granted(
    creds: dict[str, dict[str, str]],
) -> None:
    """Defence in depth: a mistaken CONNECT grant still does not expose B's tables to A."""
    a, b = creds["rel-is-a"], creds["rel-is-b"]
    admin_exec(f"GRANT CONNECT ON DATABASE {b['dbname']} TO {a['user']}")
    try:
        with connect_as(a["user"], a["password"], b["dbname"]) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                conn.execute("SELECT * FROM b_private")
            assert "permission denied for table b_private" in str(err.value)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE public.a_was_here (x int)")
    finally:
        admin_exec(f"REVOKE CONNECT ON DATABASE {b['dbname']} FROM {a['user']}")
    # B still reads its own row
    with connect_as(b["user"], b["password"], b["dbname"]) as conn:
        assert conn.execute("SELECT secret_note FROM b_private").fetchall() == [("only for b",)]


def test_an_app_opening_its_own_database_to_public_fails_the_gate_until_repaired(
    deployed: ProjectStack, creds: dict[str, dict[str, str]]
) -> None:
    """The app role owns its database, so it can GRANT CONNECT ... TO PUBLIC itself (PostgreSQL
    cannot forbid an owner that). The stack detects it: with `rerun: always` the next plain
    `pulumi up` fails A's gate naming PUBLIC; `pulumi up --refresh` repairs it (the revoke
    resource's refresh reads PUBLIC's CONNECT from the ACL and re-revokes it)."""
    a, b = creds["rel-is-a"], creds["rel-is-b"]
    with connect_as(a["user"], a["password"], a["dbname"]) as conn:
        conn.execute(f"GRANT CONNECT ON DATABASE {a['dbname']} TO PUBLIC")
    try:
        assert login_error(b["user"], b["password"], a["dbname"]) is None, "B could not connect"
        deployed.write_config(rel_config(APPS, NAMESPACE, rerun="always"))
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
        text = str(err.value)
        assert 'app "rel-is-a": check "isolation" failed' in text, text[-3000:]
        assert f'PUBLIC holds CONNECT on this app\'s database "{a["dbname"]}"' in text
        deployed.stack.up(on_output=print, color="never", refresh=True)
        refused = login_error(b["user"], b["password"], a["dbname"])
        assert refused is not None and "permission denied for database" in refused, refused
    finally:
        admin_exec(f"REVOKE CONNECT ON DATABASE {a['dbname']} FROM PUBLIC")
        deployed.write_config(rel_config(APPS, NAMESPACE, rerun="on-change"))
        deployed.up()


def checks_in_state(stack: ProjectStack) -> dict[str, dict[str, Any]]:
    """Check name → its resource in `pulumi stack export` (inputs and outputs)."""
    return {
        r["urn"].split("::")[-1]: r
        for r in export_state(stack).get("resources") or []
        if r.get("type") == CHECK_TYPE
    }


def test_adding_an_app_runs_only_its_own_check(
    deployed: ProjectStack, creds: dict[str, dict[str, str]]
) -> None:
    """rerun: on-change — a peers-only change is no change (see provider.PEERS_KEY)."""
    before = checks_in_state(deployed)
    assert {p["database"] for p in before["rel-is-a-check"]["inputs"]["peers"]} == {"rel_is_b"}
    ops: dict[str, str] = {}

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and CHECK_TYPE in pre.metadata.urn:
            ops[pre.metadata.urn.split("::")[-1]] = pre.metadata.op.value

    deployed.write_config(rel_config([*APPS, APP_C], NAMESPACE, rerun="on-change"))
    deployed.stack.up(on_output=print, on_event=on_event, color="never")

    assert ops.get("rel-is-c-check") == "create", ops
    assert {k: v for k, v in ops.items() if k != "rel-is-c-check"} in (
        {},  # the engine may not announce unchanged resources at all …
        {"rel-is-a-check": "same", "rel-is-b-check": "same"},  # … or announce them as same
    ), ops
    after = checks_in_state(deployed)
    c = after["rel-is-c-check"]["outputs"]
    assert "isolation" in c["checks_passed"]
    iso = next(x for x in c["checks"] if x["name"] == "isolation")
    assert iso["status"] == "pass"
    assert iso["message"].startswith("2 other apps, ")
    assert 'login to "rel_is_a" refused' in iso["message"]  # the next after rel_is_c, wrapped
    for name in ("rel-is-a-check", "rel-is-b-check"):
        # not re-run: the outputs (when it ran) are the old ones…
        assert after[name]["outputs"]["checked_at"] == before[name]["outputs"]["checked_at"]
        assert "peers" not in after[name]["outputs"]
        # …and the state's inputs hold the new peers list (the engine keeps new inputs on "same")
        peers = {p["database"] for p in after[name]["inputs"]["peers"]}
        assert "rel_is_c" in peers, after[name]["inputs"]["peers"]

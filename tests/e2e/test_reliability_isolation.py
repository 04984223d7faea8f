"""Isolation: with app A's credentials (from its Secret), app B's database and tables are out of
reach. B first creates a table as its owner and writes a row, as a migration would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.harness import ProjectStack, new_stack, secret_data
from tests.e2e.reliability_support import (
    admin_exec,
    connect_as,
    delete_namespaces,
    purge_leftovers,
    rel_config,
)

NAMESPACE = "rel-iso"
APPS: list[dict[str, Any]] = [
    {"name": "rel-is-a", "deletion": "drop"},
    {"name": "rel-is-b", "deletion": "drop"},
]


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    purge_leftovers("rel_is_", NAMESPACE)
    s: ProjectStack = new_stack(tmp_path_factory.mktemp("iso"), "rel-iso")
    s.write_config(rel_config(APPS, NAMESPACE, rerun="on-change"))
    s.up()
    try:
        creds = {a["name"]: secret_data(NAMESPACE, f"{a['name']}-db-credentials") for a in APPS}
        b = creds["rel-is-b"]
        with connect_as(b["user"], b["password"], b["dbname"]) as conn:
            conn.execute("CREATE TABLE b_private (secret_note text)")
            conn.execute("INSERT INTO b_private VALUES ('only for b')")
        yield creds
    finally:
        try:
            s.stack.destroy(on_output=print, color="never")
            s.stack.workspace.remove_stack(s.name)
        finally:
            delete_namespaces(NAMESPACE)


def test_a_cannot_connect_to_bs_database(creds: dict[str, dict[str, str]]) -> None:
    a = creds["rel-is-a"]
    with pytest.raises(psycopg.OperationalError) as err:
        connect_as(a["user"], a["password"], creds["rel-is-b"]["dbname"]).close()
    assert "permission denied for database" in str(err.value)


def test_a_cannot_log_in_as_b(creds: dict[str, dict[str, str]]) -> None:
    a, b = creds["rel-is-a"], creds["rel-is-b"]
    with pytest.raises(psycopg.OperationalError) as err:
        connect_as(b["user"], a["password"], b["dbname"]).close()
    assert "password authentication failed" in str(err.value)


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

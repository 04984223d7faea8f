"""The role's password reaches PostgreSQL only as the verifier the program computes.

Against a real PostgreSQL 15 with `log_statement = 'all'`: the server stores the verifier as
given, the plaintext logs in, and neither a successful nor a failing `CREATE ROLE` puts the
plaintext into the server's log (the failing one is what the default logging writes whole).
"""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import sql

from postgres_apps.scram import role_verifier

from .pg_server import PgServer


def _create_role(pg: PgServer, role: str, password_value: str) -> None:
    pg.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password_value)
        )
    )


def test_verifier_is_stored_as_given_and_the_plaintext_logs_in(pg: PgServer) -> None:
    role = f"scram_{secrets.token_hex(4)}"
    password = secrets.token_hex(20)
    verifier = role_verifier(role, password)
    pg.execute("ALTER SYSTEM SET log_statement = 'all'", "SELECT pg_reload_conf()")
    try:
        _create_role(pg, role, verifier)
        # an error on the same statement: PostgreSQL logs the statement that failed
        with pytest.raises(psycopg.errors.DuplicateObject):
            _create_role(pg, role, verifier)
        with pg.admin() as conn:
            stored = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
            ).fetchone()
        assert stored == (verifier,)
        # the session server is hardened (PUBLIC has no CONNECT on postgres): let it in there
        pg.execute(sql.SQL("GRANT CONNECT ON DATABASE postgres TO {}").format(sql.Identifier(role)))
        with psycopg.connect(**pg.conninfo(user=role, password=password)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(**pg.conninfo(user=role, password=password + "x"))
        log = pg.logfile.read_text(errors="replace")
        assert f'CREATE ROLE "{role}"' in log, "log_statement=all did not log the statement"
        assert "already exists" in log
        assert password not in log
    finally:
        pg.execute(
            "ALTER SYSTEM RESET log_statement",
            "SELECT pg_reload_conf()",
            sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)),
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)),
        )


def test_plaintext_would_have_been_logged(pg: PgServer) -> None:
    """The control case: the same failing statement with the plaintext writes it into the log
    (so the test above proves something)."""
    role = f"plain_{secrets.token_hex(4)}"
    password = secrets.token_hex(20)
    _create_role(pg, role, password)
    try:
        with pytest.raises(psycopg.errors.DuplicateObject):
            _create_role(pg, role, password)
        assert password in pg.logfile.read_text(errors="replace")
    finally:
        pg.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

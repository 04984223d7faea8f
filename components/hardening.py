"""The server-level hardening the stack applies, as SQL for tests, docs and hand queries.

PostgreSQL gives PUBLIC `CONNECT` on `postgres` and `template1` by default (and `TEMPORARY` on
`postgres`), so an app role could connect there, create temporary tables and large objects (and a
large object planted in `template1` reappears in every database later created from it). The
stack revokes both from PUBLIC on the databases in `postgres-apps:postgres.hardenDatabases` and
creates app databases from `template0`. The Pulumi resources for it are built elsewhere
(postgresql.Grant); this module is the one text the integration tests run and the runbook cites.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

HARDENED_PRIVILEGES: Final[tuple[str, ...]] = ("CONNECT", "TEMPORARY")
"""Revoked from PUBLIC on each hardened database."""

DEFAULT_HARDEN_DATABASES: Final[tuple[str, ...]] = ("postgres", "template1")
"""The databases initdb leaves open to PUBLIC: `postgres` (CONNECT, TEMPORARY) and `template1`
(CONNECT; initdb revokes TEMPORARY there). template0 refuses connections (`datallowconn`)."""


def harden_sql(databases: Sequence[str] = DEFAULT_HARDEN_DATABASES) -> str:
    """`REVOKE CONNECT, TEMPORARY ON DATABASE … FROM PUBLIC` for plain (unquoted) names."""
    return f"REVOKE {', '.join(HARDENED_PRIVILEGES)} ON DATABASE {', '.join(databases)} FROM PUBLIC"


HARDEN_SQL: Final = harden_sql()
"""`REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC` (as admin)."""

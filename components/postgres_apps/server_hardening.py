"""`ServerHardening`: the server-level part of "an app reaches its own database and nothing else".

PostgreSQL gives PUBLIC `CONNECT` and `TEMPORARY` on `postgres` and `template1`, so every app role
could connect there, create temporary tables and large objects, and plant objects in `template1`
that a later plain `CREATE DATABASE` copies. The stack revokes both from PUBLIC on the configured
databases (`postgres.hardenDatabases`, default `postgres` and `template1`) as declared, reviewable
resources; app databases are created from `template0` (the postgresql provider's default).

What it changes for roles the stack does not manage: they lose CONNECT on those databases unless
granted explicitly (`GRANT CONNECT ON DATABASE postgres TO <role>`); superusers are not affected.
Opting out (removing a database from the list) deletes its resource, which runs the provider's
`REVOKE ALL ... FROM public`: PUBLIC's default is not restored by itself (see the runbook).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_postgresql as postgresql

from postgres_apps.settings import DEFAULT_HARDEN_DATABASES

HARDENED_PRIVILEGES: Final[tuple[str, ...]] = ("CONNECT", "TEMPORARY")
"""What PUBLIC loses on each hardened database. initdb leaves PUBLIC CONNECT and TEMPORARY on
`postgres` and CONNECT on `template1` (it revokes TEMPORARY there itself); template0 refuses
connections (`datallowconn`)."""


def harden_sql(databases: Sequence[str] = DEFAULT_HARDEN_DATABASES) -> str:
    """The same change by hand: `REVOKE CONNECT, TEMPORARY ON DATABASE … FROM PUBLIC` (plain,
    unquoted names), for the integration tests, the runbook and an operator's psql session."""
    return f"REVOKE {', '.join(HARDENED_PRIVILEGES)} ON DATABASE {', '.join(databases)} FROM PUBLIC"


HARDEN_SQL: Final = harden_sql()
"""`REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC` (as admin)."""


@dataclass
class ServerHardeningArgs:
    """Which databases lose PUBLIC's default privileges."""

    databases: Sequence[str]
    """Database names (validated by postgres_apps.config: identifiers, not `template0`)."""


class ServerHardening(pulumi.ComponentResource):
    """One `postgresql.Grant` per database: PUBLIC keeps no privilege on it.

    The admin provider arrives through `opts.providers` (`{"postgresql": provider}`).
    """

    grants: dict[str, postgresql.Grant]
    databases: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: ServerHardeningArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("postgres-apps:server_hardening:ServerHardening", name, None, opts)
        # `privileges: []` for role public: the provider revokes everything PUBLIC holds on the
        # database and grants nothing (the same shape as each app database's revoke).
        self.grants = {
            database: postgresql.Grant(
                f"{name}-{database}",
                database=database,
                role="public",
                object_type="database",
                privileges=[],
                opts=pulumi.ResourceOptions(parent=self),
            )
            for database in args.databases
        }
        self.databases = pulumi.Output.from_input(list(args.databases))
        self.register_outputs({"databases": self.databases})

    @property
    def ready_resources(self) -> list[pulumi.Resource]:
        """What the gate waits for: an app's isolation is judged on the hardened server."""
        return list(self.grants.values())

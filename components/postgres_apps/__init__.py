"""postgres-apps: one PostgreSQL database, role and Secret per app, verified after every deploy.

Install with `pip install <clone or URL>`; the stack program in this repository (`__main__.py`) is
one user of it. The public API (docs/api.md): `PostgresApps` and its args, and the pieces it is
made of, `AppDatabase` and `ConnectivityCheck`.

Names resolve on first use: the gate's dynamic provider host imports
`postgres_apps.verification.provider` and should not pay for the Pulumi provider SDKs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_HOMES = {
    "AppArgs": "apps",
    "PostgresApps": "apps",
    "PostgresAppsArgs": "apps",
    "PostgresServerArgs": "apps",
    "UnmanagedArgs": "apps",
    "VerificationArgs": "apps",
    "AppDatabase": "app_database",
    "AppDatabaseArgs": "app_database",
    "ConfigError": "config",
    "ConnectivityCheck": "verification.resource",
    "ConnectivityCheckArgs": "verification.resource",
    "ConnectivityPeer": "verification.resource",
}

__all__ = [
    "AppArgs",
    "AppDatabase",
    "AppDatabaseArgs",
    "ConfigError",
    "ConnectivityCheck",
    "ConnectivityCheckArgs",
    "ConnectivityPeer",
    "PostgresApps",
    "PostgresAppsArgs",
    "PostgresServerArgs",
    "UnmanagedArgs",
    "VerificationArgs",
]

if TYPE_CHECKING:
    from postgres_apps.app_database import AppDatabase, AppDatabaseArgs
    from postgres_apps.apps import (
        AppArgs,
        PostgresApps,
        PostgresAppsArgs,
        PostgresServerArgs,
        UnmanagedArgs,
        VerificationArgs,
    )
    from postgres_apps.config import ConfigError
    from postgres_apps.verification.resource import (
        ConnectivityCheck,
        ConnectivityCheckArgs,
        ConnectivityPeer,
    )


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'postgres_apps' has no attribute {name!r}")
    return getattr(import_module(f"postgres_apps.{home}"), name)

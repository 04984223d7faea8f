"""The post-deploy verification gate: probe (checks + one JSON result), runners, dynamic provider.

Public interface used by `__main__.py`: `ConnectivityCheck`, `ConnectivityCheckArgs` and
`ConnectivityPeer`.
"""

from postgres_apps.verification.resource import (
    ConnectivityCheck,
    ConnectivityCheckArgs,
    ConnectivityPeer,
)

__all__ = ["ConnectivityCheck", "ConnectivityCheckArgs", "ConnectivityPeer"]

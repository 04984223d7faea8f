"""The post-deploy verification gate: probe (checks + one JSON result), runners, dynamic provider.

Public interface used by `__main__.py`: `ConnectivityCheck` and `ConnectivityCheckArgs`.
"""

from components.verification.resource import ConnectivityCheck, ConnectivityCheckArgs

__all__ = ["ConnectivityCheck", "ConnectivityCheckArgs"]

"""0.1.x stacks pickled the provider as components.verification.provider.ConnectivityCheckProvider.

The dynamic provider host loads that class path from the state on every refresh, update and
delete until the next `up` re-pickles it under `postgres_apps`; this module keeps it resolving.
"""

from postgres_apps.verification.provider import ConnectivityCheckProvider

__all__ = ["ConnectivityCheckProvider"]

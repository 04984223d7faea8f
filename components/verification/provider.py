"""Dynamic provider for `ConnectivityCheck` (interface commit: the probe is being filled in)."""

from __future__ import annotations

from typing import Any

import pulumi.dynamic


class ConnectivityCheckProvider(pulumi.dynamic.ResourceProvider):
    """Pickled into state: captures nothing; every input arrives as a property."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        raise NotImplementedError("ConnectivityCheck: probe not implemented yet (work in progress)")

"""`AppsReady`: the point after which every app of the stack exists; the gate runs after it.

Why a resource of its own: a check proves its app isolated from every other app, so it may run
only once every other app's role, database and Secret exist. With an edge from each of n checks
to the resources of its n-1 peers, each check's state held 2(n-1) peer URNs in `dependencies`
and again in `propertyDependencies`: the state — which a DIY backend writes whole after every
step (`pkg/backend/diy/state.go`, `saveCheckpoint`) — grew with the square of the apps. One
resource that depends on every app, and that every check and namespace probe depends on, keeps
the same order with edges that grow linearly.

It reaches nothing: create and update store the names of the apps it waited for, so that the
state says which apps a run's isolation checks could count on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi.dynamic

APPS_KEY: Final = "apps"
RESOURCE_ID: Final = "apps-ready"


class AppsReady(pulumi.dynamic.Resource, module="verification", name="AppsReady"):
    """Registered after `opts.depends_on` (every app's ready resources and the server hardening)."""

    apps: pulumi.Output[list[str]]
    """The apps it waited for, sorted."""

    def __init__(
        self, name: str, apps: Sequence[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(AppsReadyProvider(), name, {APPS_KEY: sorted(apps)}, opts)


def _apps(props: dict[str, Any]) -> list[str]:
    return sorted(str(app) for app in props.get(APPS_KEY) or [])


class AppsReadyProvider(pulumi.dynamic.ResourceProvider):
    """Pickled into state by reference: no attributes, no captured objects."""

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(
            changes=_apps(olds) != _apps(news), replaces=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=RESOURCE_ID, outs={APPS_KEY: _apps(props)})

    def update(
        self, _id: str, _olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs={APPS_KEY: _apps(news)})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing outside the state to remove."""

"""`PostgresApps` for Pulumi's Python component provider host: YAML (and other-language) programs.

`provider/__main__.py` serves this class with Pulumi's `component_provider_host`, which infers
the package schema from type annotations. The host reads annotations as they are stored
(`inspect.get_annotations`, no evaluation), rejects unions and `Literal`, and names every type
`postgres-apps:index:<ClassName>`. So `postgres_apps.apps` (postponed annotations,
`AppArgs | str`, `Literal[...]`, resource-valued attributes) cannot be served as it is. This module
derives host-readable copies of its args TypedDicts (same keys, same docstrings: one source) and a
thin component that runs the real `postgres_apps.apps.PostgresApps` as its only child.
"""

# No `from __future__ import annotations` here: the host reads this module's annotations as they
# are stored, and needs types, not strings.
import json
import types
from collections.abc import Awaitable, Mapping, Sequence
from importlib.metadata import version
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    TypedDict,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

import pulumi

from postgres_apps import apps

RESOURCE_TYPE = "postgres-apps:index:PostgresApps"
"""The type the host gives the class (`<package>:index:<ClassName>`): the schema's and the URN's."""


def _hostable(tp: Any, made: dict[str, type]) -> Any:
    """`tp` as the component host can read it: `Literal[...]` becomes its values' type, a union of a
    TypedDict and a bare string becomes the TypedDict (YAML writes the object form), TypedDicts are
    copied with evaluated annotations."""
    origin = get_origin(tp)
    if origin is Literal:
        kinds = {type(v) for v in get_args(tp)}
        if len(kinds) != 1:
            raise TypeError(f"Literal with mixed value types: {tp}")
        return kinds.pop()
    if origin in (Union, types.UnionType):
        if any(get_origin(a) is Awaitable for a in get_args(tp)):
            return tp  # a `pulumi.Input[...]`: the host reads it as an input property
        dicts = [a for a in get_args(tp) if isinstance(a, type) and _is_typeddict(a)]
        if len(dicts) == 1 and set(get_args(tp)) == {dicts[0], str}:
            return _hostable(dicts[0], made)
        raise TypeError(f"union the component host cannot express: {tp}")
    if origin is not None and origin in (Sequence, list):
        (item,) = get_args(tp)
        return Sequence[_hostable(item, made)]  # type: ignore[misc]
    if isinstance(tp, type) and _is_typeddict(tp):
        return _typeddict(tp, made)
    return tp


def _is_typeddict(tp: type) -> bool:
    return hasattr(tp, "__required_keys__") and hasattr(tp, "__optional_keys__")


def _typeddict(td: type, made: dict[str, type]) -> type:
    """A copy of `td` with evaluated, host-readable annotations. `__module__`/`__qualname__` stay
    the original's, so the host's docstring reader (`inspect.getsource`) finds the source of
    `td` and every key keeps its description."""
    if td.__name__ in made:
        return made[td.__name__]
    # `pulumi.Input[X]` holds the forward reference "Output[T]" (T unbound): resolved in pulumi's
    # own names. The host reads the Input's type from its `Awaitable[X]` member.
    hints = get_type_hints(td, localns={"Output": pulumi.Output, "T": pulumi.output.T})
    fields = {key: _hostable(hint, made) for key, hint in hints.items()}
    copy = cast(type, TypedDict(td.__name__, fields, total=False))  # type: ignore[operator]
    copy.__module__ = td.__module__
    copy.__qualname__ = td.__qualname__
    copy.__doc__ = td.__doc__
    made[td.__name__] = copy
    return copy


def _wire_ints(value: Any, tp: Any) -> Any:
    """Whole numbers back to `int` where the annotation says `int`. Numbers arrive as floats, and
    the host's own conversion is lost in pulumi 3.272.0 (`ComponentProvider.map_input_properties`
    assigns `int(value)`, then overwrites it with the float), so `adminPort: 5432` would reach the
    validator as 5432.0 and be refused ("must be an integer")."""
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(tp, type) and _is_typeddict(tp) and isinstance(value, Mapping):
        hints = tp.__annotations__
        return {k: _wire_ints(v, hints[k]) if k in hints else v for k, v in value.items()}
    if get_origin(tp) in (Sequence, list) and isinstance(value, list | tuple):
        (item,) = get_args(tp)
        return [_wire_ints(v, item) for v in value]
    return value


if TYPE_CHECKING:
    HostedArgs = apps.PostgresAppsArgs
else:
    HostedArgs = _typeddict(apps.PostgresAppsArgs, {})
    """`PostgresAppsArgs` as the host reads it: the inputs of `postgres-apps:index:PostgresApps`."""


class PostgresApps(pulumi.ComponentResource):
    """Every app's database, role, grants, Secret and verification gate, as one component
    (`postgres_apps.apps.PostgresApps`, its only child). Inputs are the stack config's keys
    (camelCase); export `managedApps` as a stack output: the next run's removal check reads it."""

    apps: pulumi.Output[dict[str, Any]]
    """Per app: namespace, secretName, database, role, deletion and the gate's results."""
    postgres: pulumi.Output[dict[str, Any]]
    """host, port, sslmode the apps use and the admin endpoint."""
    verification_mode: pulumi.Output[str]
    """`pod`, `direct` or `off`."""
    server_hardening: pulumi.Output[list[str]]
    """Databases PUBLIC lost CONNECT and TEMPORARY on."""
    connection_budget: pulumi.Output[dict[str, Any]]
    """The apps' connection limits against the server's."""
    managed_apps: pulumi.Output[dict[str, dict[str, str]]]
    """Apps and their deletion policy; export as `managedApps`."""
    retirement_copies: pulumi.Output[dict[str, Any]]
    """Verified copies taken before `drop` apps were dropped; export as `retirementCopies`."""
    unmanaged: pulumi.Output[dict[str, Any]] | None
    """Roles/databases on the server no app declares."""

    def __init__(
        self,
        name: str,
        args: HostedArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        real_args = cast(apps.PostgresAppsArgs, _wire_ints(args, HostedArgs))
        apps.settings_from_args(real_args)  # before registering: bad input changes nothing
        super().__init__(RESOURCE_TYPE, name, None, opts)
        inner = apps.PostgresApps(name, real_args, pulumi.ResourceOptions(parent=self))
        self.apps = inner.apps
        self.postgres = inner.postgres
        self.verification_mode = inner.verification_mode
        self.server_hardening = inner.server_hardening
        self.connection_budget = cast(pulumi.Output[dict[str, Any]], inner.connection_budget)
        self.managed_apps = inner.managed_apps
        self.retirement_copies = inner.retirement_copies
        self.unmanaged = cast(pulumi.Output[dict[str, Any]] | None, inner.unmanaged)
        self.register_outputs(
            {
                "apps": self.apps,
                "postgres": self.postgres,
                "verificationMode": self.verification_mode,
                "serverHardening": self.server_hardening,
                "connectionBudget": self.connection_budget,
                "managedApps": self.managed_apps,
                "retirementCopies": self.retirement_copies,
                "unmanaged": self.unmanaged,
            }
        )


def package_version() -> str:
    """The installed distribution's version: the schema's and the provider's."""
    return version("postgres-apps")


def schema() -> dict[str, Any]:
    """The package schema the host serves (`pulumi package get-schema provider` prints it)."""
    from pulumi.provider.experimental.component import ComponentProvider  # noqa: PLC0415

    provider = ComponentProvider([PostgresApps], "postgres-apps", None, package_version())
    return cast(dict[str, Any], json.loads(provider.schema or "{}"))

"""The check's inputs, described once: every property the resource sends and what the provider does
with it. resource.py builds its property bag from `INPUTS`; provider.py derives every key list
(`COMPARED_KEYS`, `SECRET_KEYS`, …) from it, so a new input is one line here.

The wire names and the state shape are those of 0.1.x (a unit test diffs a state written by it):
an existing stack sees no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import pulumi

if TYPE_CHECKING:
    from postgres_apps.verification.resource import ConnectivityCheckArgs

Compare = Literal["value", "hash", "no"]


@dataclass(frozen=True)
class CheckInput:
    """One input property of `ConnectivityCheck`."""

    name: str
    """The property's name on the wire and in the state."""
    read: Callable[[ConnectivityCheckArgs], Any]
    """Its value, from the resource's args."""
    compare: Compare = "value"
    """How `diff` compares it: the value (old outputs vs new inputs), through a hash kept in the
    outputs (a secret), or not at all."""
    secret: bool = False
    """Sent as a Pulumi secret; never copied into the outputs."""
    hash_output: str | None = None
    """For `compare="hash"`: the output that holds the hash."""
    is_list: bool = False
    """A list: a missing value (a state written before it existed) compares equal to `[]`."""
    stored: bool = True
    """Copied into the outputs, where `diff` finds the old value (a stored secret is a secret
    output: `SECRET_OUTPUTS`, encrypted in the state like the input)."""
    absent_is_unchanged: bool = False
    """An old state without this output (written before the input existed) is no change."""

    def __post_init__(self) -> None:
        if self.secret and self.compare == "value" and not self.absent_is_unchanged:
            raise ValueError(f"secret input {self.name!r}: compared by value only if new")
        if self.compare == "value" and not self.stored:
            raise ValueError(f"input {self.name!r}: compared by value, so it must be stored")
        if (self.compare == "hash") != (self.hash_output is not None):
            raise ValueError(f"input {self.name!r}: a hashed input names its hash output")


def _secret(value: Any) -> Any:
    return None if value is None else pulumi.Output.secret(value)


def stack_kubeconfig() -> Any:
    """The stack's `kubernetes:kubeconfig` (the config the default kubernetes provider — and so
    the app's Secret — uses), else None."""
    return pulumi.Config("kubernetes").get_secret("kubeconfig")


def _kubeconfig(args: ConnectivityCheckArgs) -> Any:
    """The args' kubeconfig, else the stack's."""
    if args.kubeconfig is not None:
        return pulumi.Output.secret(args.kubeconfig)
    return stack_kubeconfig()


CREDENTIALS_HASH: Final = "credentials_sha256"


def _credential(name: str, read: Callable[[ConnectivityCheckArgs], Any]) -> CheckInput:
    """A secret input compared only through the credentials hash, never stored."""
    return CheckInput(
        name, read, compare="hash", secret=True, hash_output=CREDENTIALS_HASH, stored=False
    )


INPUTS: Final[tuple[CheckInput, ...]] = (
    CheckInput("app_name", lambda a: a.app_name),
    CheckInput("namespace", lambda a: a.namespace),
    CheckInput("secret_name", lambda a: a.secret_name),
    CheckInput("host", lambda a: a.host),
    CheckInput("port", lambda a: a.port),
    CheckInput("database", lambda a: a.database),
    CheckInput("username", lambda a: a.username),
    _credential("password", lambda a: pulumi.Output.secret(a.password)),
    _credential("uri", lambda a: _secret(a.uri)),
    CheckInput("sslmode", lambda a: a.sslmode),
    CheckInput("direct_host", lambda a: a.direct_host),
    CheckInput("direct_port", lambda a: a.direct_port),
    # Neither compared nor stored: see provider.PEERS_KEY.
    CheckInput(
        "peers",
        lambda a: [{"database": p.database, "role": p.role} for p in a.peers],
        compare="no",
        stored=False,
    ),
    CheckInput("verification_mode", lambda a: a.settings.mode),
    CheckInput("image", lambda a: a.settings.image),
    CheckInput("image_pull_policy", lambda a: a.settings.image_pull_policy),
    CheckInput("timeout_seconds", lambda a: a.settings.timeout_seconds),
    CheckInput("latency_budget_ms", lambda a: a.settings.latency_budget_ms),
    CheckInput("rerun", lambda a: a.settings.rerun),
    CheckInput("roundtrips", lambda a: a.roundtrips),
    CheckInput("kube_context", lambda a: a.kube_context),
    # a change re-runs the check; sorted, so a reordered config list is no change
    CheckInput(
        "allowed_databases", lambda a: sorted(set(a.settings.allowed_databases)), is_list=True
    ),
    # Stored (as a secret output): delete gets only the state's outputs and needs the cluster.
    CheckInput("kubeconfig", _kubeconfig, secret=True, absent_is_unchanged=True),
    # True in a preview: `diff` then leaves out the `rerun: always` re-run (see provider.diff).
    CheckInput("dry_run", lambda _a: pulumi.runtime.is_dry_run(), compare="no", stored=False),
    # Pod mode with a NamespaceProbe: the run's id re-runs the judgement, the app's result is
    # what it judges (provider.PROBE_REPORT_KEY). None for a check that runs its own pod.
    CheckInput("probe_run", lambda a: a.probe_run),
    CheckInput("probe_report", lambda a: a.probe_report, compare="no", stored=False),
    # The Secret keys the config marks as connection strings; direct mode gets their values
    # (hashed with the password: a changed template re-runs the check, nothing is stored).
    CheckInput("connection_keys", lambda a: list(a.connection_keys), is_list=True),
    _credential("connection_strings", lambda a: _secret(a.connection_strings)),
)
"""Every input, in the order of 0.1.x's property bag (new ones last)."""

BY_NAME: Final = {i.name: i for i in INPUTS}

PLAIN_KEYS: Final[tuple[str, ...]] = tuple(
    i.name for i in INPUTS if i.compare == "value" and not i.secret
)
"""Plain inputs `diff` compares by value (old outputs vs new inputs); all stored."""

COMPARED_KEYS: Final[tuple[str, ...]] = tuple(i.name for i in INPUTS if i.compare == "value")
"""Every input `diff` compares by value: the plain ones and the stored secrets."""

STORED_KEYS: Final[tuple[str, ...]] = tuple(i.name for i in INPUTS if i.stored)
"""Inputs copied into the outputs (where `diff` finds their old value)."""

SECRET_OUTPUTS: Final[tuple[str, ...]] = tuple(i.name for i in INPUTS if i.stored and i.secret)
"""Stored secrets: the resource lists them in `additional_secret_outputs`."""

ABSENT_IS_UNCHANGED: Final = frozenset(i.name for i in INPUTS if i.absent_is_unchanged)

LIST_KEYS: Final = frozenset(i.name for i in INPUTS if i.is_list)
SECRET_KEYS: Final = frozenset(i.name for i in INPUTS if i.secret)

HASHED: Final[dict[str, tuple[str, ...]]] = {
    out: tuple(i.name for i in INPUTS if i.hash_output == out)
    for out in dict.fromkeys(i.hash_output for i in INPUTS if i.hash_output)
}
"""Hash output → the secret inputs hashed into it (in order)."""

RESULT_KEYS: Final[tuple[str, ...]] = (
    "checks_passed",
    "checks",
    "connect_ms",
    "roundtrip_p50_ms",
    "roundtrip_p95_ms",
    "server_version",
    "checked_at",
    "mode",
)
"""What a run of the check adds to the outputs."""

OUTPUT_PLACEHOLDERS: Final[tuple[str, ...]] = (*HASHED, *RESULT_KEYS)
"""Outputs the resource declares (as `None`) besides its inputs."""


def props_of(args: ConnectivityCheckArgs) -> dict[str, Any]:
    """The resource's property bag: every input, then the outputs as `None` placeholders."""
    props: dict[str, Any] = {i.name: i.read(args) for i in INPUTS}
    props |= dict.fromkeys(OUTPUT_PLACEHOLDERS)
    return props

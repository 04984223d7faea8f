"""Deletion safety: removing an app from config never drops its data by accident.

Every successful `pulumi up` exports `managedApps` (app → its names and deletion policy). The next
run reads that output back through a `StackReference` to this very stack and compares it with the
config *before the program finishes*. An app that disappeared while its policy was `protect` makes
the program fail with the retire procedure. A failed program makes the engine skip every delete, so
nothing is dropped; the engine's own `protect` flag on role and database stays as a second net (for
`pulumi destroy`, `--target`, or a state without `managedApps`). See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from postgres_apps.settings import AppSpec

OUTPUT_NAME = "managedApps"
RUNBOOK = "docs/runbooks/postgres-connectivity.md#retiring-an-app"


class RemovalRefused(pulumi.RunError):
    """A protected app was removed from config; nothing was changed."""


def managed_apps(apps: Sequence[AppSpec]) -> dict[str, dict[str, str]]:
    """The `managedApps` stack output: what this run manages (no secrets)."""
    return {
        app.name: {
            "namespace": app.namespace,
            "role": app.role_name,
            "database": app.database_name,
            "secret": app.secret_name,
            "deletion": app.deletion,
        }
        for app in apps
    }


def refused_removals(
    previous: object, apps: Sequence[AppSpec], retired: Sequence[str] = ()
) -> list[tuple[str, Mapping[str, str]]]:
    """Apps of the previous run that are gone from config while their policy was `protect`.

    `previous` is the previous `managedApps` output as read back (None on a stack's first run).
    Anything unreadable counts as protected: refusing is the safe side. `retired` names apps the
    operator retired by hand (config `postgres-apps:retired`): not refused here; if their role or
    database are still in state and protected, the engine's `protect` still refuses to delete them.
    """
    if not isinstance(previous, Mapping):
        return []
    current = {app.name for app in apps}
    refused: list[tuple[str, Mapping[str, str]]] = []
    for name, record in sorted(previous.items()):
        if name in current or name in retired:
            continue
        fields: Mapping[str, str] = record if isinstance(record, Mapping) else {}
        if fields.get("deletion") in ("drop", "retain"):
            continue
        refused.append((str(name), fields))
    return refused


def retire_message(refused: Sequence[tuple[str, Mapping[str, str]]]) -> str:
    """What the operator reads when `pulumi up` refuses to drop an app."""
    lines = [
        "refusing to remove "
        + ", ".join(f'"{name}"' for name, _ in refused)
        + " from postgres-apps:apps: the database is protected (deletion: protect). "
        "Nothing was changed, created or dropped.",
        "To retire an app:",
    ]
    for name, record in refused:
        database = record.get("database", name.replace("-", "_"))
        namespace = record.get("namespace", "apps")
        secret = record.get("secret", f"{name}-db-credentials")
        lines += [
            f'  app "{name}" (database "{database}", Secret {namespace}/{secret}):',
            "    1. put its entry back in postgres-apps:apps and stop the app "
            f"(kubectl -n {namespace} scale deploy/{name} --replicas=0);",
            "    2. on its entry set `deletion: drop` (a verified pg_dump is taken into "
            "postgres-apps:retirement.directory, then database and role are dropped) or "
            "`deletion: retain` (keep them, stop managing them) and run `pulumi up`;",
            "    3. remove the entry and run `pulumi up` again.",
        ]
    lines.append(f"See {RUNBOOK}.")
    return "\n".join(lines)


def check_removals(
    previous: object, apps: Sequence[AppSpec], retired: Sequence[str] = ()
) -> dict[str, dict[str, str]]:
    """Raise `RemovalRefused` if a protected app was removed; else return the new `managedApps`."""
    refused = refused_removals(previous, apps, retired)
    if refused:
        raise RemovalRefused(retire_message(refused))
    return managed_apps(apps)


def this_stack_name() -> str:
    """Fully qualified name of the running stack (`organization/project/stack` on a DIY backend)."""
    org = pulumi.get_organization() or "organization"
    return f"{org}/{pulumi.get_project()}/{pulumi.get_stack()}"


def previous_deployment(opts: pulumi.ResourceOptions | None = None) -> pulumi.StackReference:
    """This stack's own outputs of its last successful run, read back (one read per program)."""
    return pulumi.StackReference("previous-deployment", this_stack_name(), opts=opts)


def guarded_managed_apps(
    apps: Sequence[AppSpec],
    retired: Sequence[str] = (),
    opts: pulumi.ResourceOptions | None = None,
    previous: pulumi.StackReference | None = None,
) -> pulumi.Output[dict[str, dict[str, str]]]:
    """The new `managedApps`, available only if no protected app was removed (else the program
    fails with the retire message). Export it: the stack's outputs wait for it."""
    previous = previous or previous_deployment(opts)
    return previous.get_output(OUTPUT_NAME).apply(lambda prev: check_removals(prev, apps, retired))


def retiring_apps(
    previous: object, apps: Sequence[AppSpec], retired: Sequence[str] = ()
) -> list[tuple[str, Mapping[str, str]]]:
    """Apps of the previous run whose policy was `drop` and that are gone from config now: this
    run drops them, so it first takes their copy (`postgres_apps.retirement`). Apps listed in
    `retired` were retired by hand: no copy is taken of them."""
    if not isinstance(previous, Mapping):
        return []
    current = {app.name for app in apps}
    return [
        (str(name), record)
        for name, record in sorted(previous.items())
        if name not in current
        and name not in retired
        and isinstance(record, Mapping)
        and record.get("deletion") == "drop"
    ]

"""`pulumi preview --json` → the pull-request comment: what changes per app, and who can reach what.

    pulumi preview --json --show-sames -s dev > preview.json
    python -m tools.preview_comment preview.json --stack dev > comment.md

Input: the engine's preview digest (`display.PreviewDigest`): `steps[]` with `op`, `urn`,
`oldState`/`newState` (`type`, `inputs`, `outputs`, `parent`, `protect`, `propertyDependencies`,
...), `diffReasons`, `replaceReasons`, `detailedDiff`; `diagnostics[]`; `changeSummary`. The engine
has already replaced every secret value by the string `[secret]` and every value unknown during
preview by a fixed sentinel. This tool prints values only of a fixed set of non-sensitive
properties (names, namespaces, role attributes, connection limits, grant privileges); everything
else is named, never shown.

The privilege matrix (which role can connect to which database) is derived from the resources,
BEFORE (old states) and AFTER (new states): the owner connects; a Grant to role `public` on
`database` with privileges `[]` revokes PUBLIC's default CONNECT/TEMPORARY, so without it every
role can connect; an explicit CONNECT (or ALL) grant lets that role in; a SUPERUSER role connects
everywhere. `--show-sames` makes the engine include unchanged resources; without it the matrices
cover only what changes (the comment says so).

**Unmanaged on the server** (only when the preview says anything about it): roles and databases
no app declares, from this preview's diagnostics (the program logs its report; the engine's
preview JSON carries no new stack outputs) and from the last `up` (the Stack's old outputs).

Exit status: 0; 2 when the input is not a preview digest; 3 with `--fail-on-destructive` when a
database or role would be replaced or deleted (the comment is still printed first) unless that
app is named with `--allow`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

UNKNOWN: Final = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
"""The engine's placeholder for a value computed later (`computedValuePlaceholder`)."""
SECRET: Final = "[secret]"  # noqa: S105

ROLE_TYPE: Final = "postgresql:index/role:Role"
DATABASE_TYPE: Final = "postgresql:index/database:Database"
GRANT_TYPE: Final = "postgresql:index/grant:Grant"
SECRET_TYPE: Final = "kubernetes:core/v1:Secret"  # noqa: S105
NAMESPACE_TYPE: Final = "kubernetes:core/v1:Namespace"
APP_DATABASE_TYPE: Final = "postgres-apps:app_database:AppDatabase"
COPY_TYPE: Final = "pulumi-python:dynamic/retirement:RetirementCopy"
"""The copy `deletion: drop` takes before the app's database goes (postgres_apps/retirement.py)."""
COPY_SUFFIX: Final = "-retirement-copy"
STACK_TYPE: Final = "pulumi:pulumi:Stack"

# Copies of postgres_apps/inventory.py's OUTPUT_NAME, WARNING_PREFIX, NOT_CHECKED_PREFIX and
# NONE_MESSAGE: CI runs this file as a script from the base branch, without the program on its
# path. tests/unit/test_preview_comment.py pins them equal.
UNMANAGED_OUTPUT: Final = "unmanaged"
UNMANAGED_WARNING: Final = "unmanaged on the server (declared by no app of this stack):"
UNMANAGED_NOT_CHECKED: Final = "unmanaged roles and databases: not checked"
UNMANAGED_NONE: Final = "unmanaged roles and databases: none"
UNMANAGED_RUNBOOK: Final = "docs/runbooks/postgres-connectivity.md#unmanaged"

# Steps that remove a resource from the stack, and steps that are not real changes.
REMOVING_OPS: Final = frozenset(
    {"delete", "delete-replaced", "discard", "discard-replaced", "remove-pending-replace"}
)
QUIET_OPS: Final = frozenset({"same", "read", "refresh"})
DESTRUCTIVE_OPS: Final = frozenset({"delete", "replace", "create-replacement", "delete-replaced"})
OP_ORDER: Final = (
    "create",
    "update",
    "replace",
    "create-replacement",
    "delete-replaced",
    "delete",
    "import",
    "read",
    "same",
)
OP_SYMBOL: Final = {
    "create": "+ create",
    "update": "~ update",
    "replace": "+- replace",
    "create-replacement": "++ create-replacement",
    "delete-replaced": "-- delete-replaced",
    "delete": "- delete",
    "import": "= import",
    "read": "> read",
    "same": "  same",
}

SHOWN_PROPERTIES: Final = frozenset(
    {
        "name",
        "owner",
        "login",
        "superuser",
        "createRole",
        "createDatabase",
        "replication",
        "bypassRowLevelSecurity",
        "inherit",
        "connectionLimit",
        "roles",
        "role",
        "database",
        "objectType",
        "privileges",
        "schema",
        "allowConnections",
        "isTemplate",
        "template",
        "encoding",
        "lcCollate",
        "lcCtype",
        "type",
        "metadata.name",
        "metadata.namespace",
        "metadata.labels",
        "protect",
    }
)
"""Properties whose values may be shown (diff paths are matched on their first segments)."""

_URI_CREDENTIALS: Final = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")


# --- the digest ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """One resource state of a step (old or new) as the comment needs it."""

    urn: str
    type: str
    props: Mapping[str, Any]
    id: str
    parent: str | None
    protect: bool
    external: bool
    property_dependencies: Mapping[str, Sequence[str]]

    @property
    def name(self) -> str:
        return urn_name(self.urn)


@dataclass(frozen=True)
class Step:
    op: str
    urn: str
    old: State | None
    new: State | None
    diff_reasons: tuple[str, ...]
    replace_reasons: tuple[str, ...]
    detailed_diff: Mapping[str, str]
    """property path → diff kind (add, update, delete, *-replace)."""

    @property
    def type(self) -> str:
        state = self.new or self.old
        return state.type if state is not None else urn_type(self.urn)

    @property
    def name(self) -> str:
        return urn_name(self.urn)


@dataclass
class Digest:
    steps: list[Step]
    diagnostics: list[tuple[str, str]]
    """(severity, message)."""
    change_summary: dict[str, int]


class DigestError(ValueError):
    """The input is not a `pulumi preview --json` document."""


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def urn_type(urn: str) -> str:
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""


def _state(raw: Any, old: bool) -> State | None:
    if not isinstance(raw, Mapping):
        return None
    inputs = raw.get("inputs") or {}
    outputs = raw.get("outputs") or {}
    # Old state: what exists (outputs win). New state: what is asked for (inputs win); outputs
    # fill in what the provider computes.
    props = {**inputs, **outputs} if old else {**outputs, **inputs}
    deps = raw.get("propertyDependencies") or {}
    return State(
        urn=str(raw.get("urn", "")),
        type=str(raw.get("type", "")),
        props=props,
        id=str(raw.get("id", "")),
        parent=raw.get("parent") or None,
        protect=bool(raw.get("protect", False)),
        external=bool(raw.get("external", False)),
        property_dependencies={str(k): [str(u) for u in v or []] for k, v in deps.items()},
    )


def parse_digest(document: Any) -> Digest:
    """The parts of the engine's preview digest this tool reads."""
    if not isinstance(document, Mapping) or not isinstance(document.get("steps", []), list):
        raise DigestError("not a pulumi preview --json document (no steps list)")
    steps: list[Step] = []
    for raw in document.get("steps") or []:
        if not isinstance(raw, Mapping) or "op" not in raw or "urn" not in raw:
            raise DigestError(f"a step without op/urn: {str(raw)[:120]}")
        detailed = raw.get("detailedDiff") or {}
        steps.append(
            Step(
                op=str(raw["op"]),
                urn=str(raw["urn"]),
                old=_state(raw.get("oldState"), old=True),
                new=_state(raw.get("newState"), old=False),
                diff_reasons=tuple(str(r) for r in raw.get("diffReasons") or ()),
                replace_reasons=tuple(str(r) for r in raw.get("replaceReasons") or ()),
                detailed_diff={
                    str(k): str(v.get("kind", "update")) if isinstance(v, Mapping) else "update"
                    for k, v in detailed.items()
                },
            )
        )
    diagnostics = [
        (str(d.get("severity", "")), str(d.get("message", "")))
        for d in document.get("diagnostics") or []
        if isinstance(d, Mapping)
    ]
    summary = {str(k): int(v) for k, v in (document.get("changeSummary") or {}).items()}
    return Digest(steps=steps, diagnostics=diagnostics, change_summary=summary)


# --- per-app grouping ----------------------------------------------------------------------------


def app_of(step: Step, parents: Mapping[str, str | None]) -> str | None:
    """The app a step belongs to: the name of its nearest `AppDatabase` ancestor (or itself)."""
    urn: str | None = step.urn
    seen: set[str] = set()
    while urn and urn not in seen:
        seen.add(urn)
        if urn_type(urn) == APP_DATABASE_TYPE:
            return urn_name(urn)
        urn = parents.get(urn)
    return None


def parent_map(steps: Iterable[Step]) -> dict[str, str | None]:
    parents: dict[str, str | None] = {}
    for step in steps:
        state = step.new or step.old
        parents[step.urn] = state.parent if state is not None else None
    return parents


# --- showing values safely -----------------------------------------------------------------------


def _inline(value: Any) -> str:
    if value == SECRET:
        return SECRET
    if value == UNKNOWN:
        return "?"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown(value: Any) -> str:
    """A non-sensitive property value for Markdown (secrets and unknowns by name only)."""
    if value == UNKNOWN:
        return "_(known after apply)_"
    if value is None:
        return "_(unset)_"
    if isinstance(value, list):
        text = "[" + ", ".join(_inline(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}={_inline(v)}" for k, v in sorted(value.items())) + "}"
    else:
        text = _inline(value)
    # Inside a Markdown table cell: a pipe would end the cell, a backtick the code span.
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def lookup(props: Mapping[str, Any], path: str) -> Any:
    value: Any = props
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def may_show(path: str) -> bool:
    parts = re.split(r"[.\[]", path)
    return parts[0] in SHOWN_PROPERTIES or ".".join(parts[:2]) in SHOWN_PROPERTIES


def change_details(step: Step) -> str:
    """What changes in one step, property by property (values only where they are safe)."""
    old_props = step.old.props if step.old else {}
    new_props = step.new.props if step.new else {}
    paths = list(step.detailed_diff) or list(step.replace_reasons) + [
        r for r in step.diff_reasons if r not in step.replace_reasons
    ]
    details: list[str] = []
    for path in paths:
        kind = step.detailed_diff.get(
            path, "update-replace" if path in step.replace_reasons else ""
        )
        mark = " (forces replacement)" if kind.endswith("replace") else ""
        if may_show(path):
            before, after = lookup(old_props, path), lookup(new_props, path)
            details.append(f"`{path}`: {shown(before)} → {shown(after)}{mark}")
        else:
            details.append(f"`{path}` changes{mark}")
    if step.old and step.new and step.old.protect != step.new.protect:
        details.append(f"`protect`: {shown(step.old.protect)} → {shown(step.new.protect)}")
    return "; ".join(details)


def scrub(message: str) -> str:
    """Diagnostics are engine text: mask URI credentials and cap the length."""
    text = _URI_CREDENTIALS.sub(r"\1***@", message.strip())
    return text if len(text) <= 2000 else text[:2000] + " …"


# --- the privilege matrix ------------------------------------------------------------------------


@dataclass
class Access:
    """Who can reach what, derived from one set of resource states."""

    roles: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    """database → owner role ("?" when not known)."""
    public_revoked: set[str] = field(default_factory=set)
    public_privileges: dict[str, list[str]] = field(default_factory=dict)
    connect_grants: set[tuple[str, str]] = field(default_factory=set)
    secrets: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    """secret urn → (namespace/name, app label, read-only)."""

    def connect(self, role: str, database: str) -> str:
        """How `role` can connect to `database` ("—" when it cannot)."""
        props = self.roles.get(role, {})
        if props.get("superuser") is True:
            return "superuser"
        if self.owners.get(database) == role:
            return "owner"
        if (role, database) in self.connect_grants:
            return "granted"
        if database not in self.public_revoked and props.get("login", False) is not False:
            return "via PUBLIC"
        return "—"


def _resolve(
    state: State, prop: str, by_urn: Mapping[str, State], target_prop: str = "name"
) -> Any:
    """A property's value; when unknown during preview, the `name` of the one resource it depends
    on (e.g. Database.owner ← Role, Grant.database ← Database)."""
    value = state.props.get(prop)
    if value != UNKNOWN:
        return value
    deps = state.property_dependencies.get(prop, [])
    if len(deps) == 1 and deps[0] in by_urn:
        return by_urn[deps[0]].props.get(target_prop, UNKNOWN)
    return UNKNOWN


def _known_name(state: State) -> str:
    name = state.props.get("name")
    return name if isinstance(name, str) and name != UNKNOWN else state.name


def _add_grant(access: Access, state: State, by_urn: Mapping[str, State]) -> None:
    if state.props.get("objectType") != "database":
        return
    db = _resolve(state, "database", by_urn)
    role = state.props.get("role")
    privileges = state.props.get("privileges")
    if not isinstance(db, str) or not isinstance(role, str) or not isinstance(privileges, list):
        return
    privs = sorted(str(p).upper() for p in privileges)
    if role.lower() == "public":
        if privs:
            access.public_privileges[db] = privs
        else:
            access.public_revoked.add(db)
    elif "CONNECT" in privs or "ALL" in privs:
        access.connect_grants.add((role, db))


def _add_secret(access: Access, state: State) -> None:
    meta = state.props.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    namespace = meta.get("namespace", "default")
    name = meta.get("name", state.name)
    if state.external and "/" in state.id:
        # A read (`Secret.get`): its id is namespace/name; during preview it has no outputs yet.
        namespace, _, name = state.id.partition("/")
    labels = meta.get("labels")
    app = str(labels.get("app.kubernetes.io/name", "")) if isinstance(labels, Mapping) else ""
    where = f"{namespace if namespace != UNKNOWN else '?'}/{name if name != UNKNOWN else '?'}"
    access.secrets[state.urn] = (where, app, state.external)


def derive_access(states: Iterable[State]) -> Access:
    """Roles, owners, PUBLIC revokes, grants and Secrets of one set of resource states."""
    states = list(states)
    by_urn = {s.urn: s for s in states}
    access = Access()
    for state in states:
        if state.type == ROLE_TYPE:
            access.roles[_known_name(state)] = state.props
    for state in states:
        if state.type == DATABASE_TYPE:
            owner = _resolve(state, "owner", by_urn)
            access.owners[_known_name(state)] = (
                owner if isinstance(owner, str) and owner != UNKNOWN else "?"
            )
        elif state.type == GRANT_TYPE:
            _add_grant(access, state, by_urn)
        elif state.type == SECRET_TYPE:
            _add_secret(access, state)
    return access


def _matrix_table(access: Access, other: Access | None, roles: list[str], dbs: list[str]) -> str:
    if not roles or not dbs:
        return "_No managed roles or databases._\n"
    lines = [
        "| role \\ database | " + " | ".join(f"`{d}`" for d in dbs) + " |",
        "|---|" + "---|" * len(dbs),
    ]
    for role in roles:
        cells = []
        for db in dbs:
            exists = role in access.roles and db in access.owners
            cell = access.connect(role, db) if exists else ""
            if other is not None and exists:
                was = (
                    other.connect(role, db) if role in other.roles and db in other.owners else None
                )
                if was is not None and was != cell:
                    cell = f"**{cell}** (was {was})"
                elif was is None and cell != "—":
                    cell = f"**{cell}** (new)"
            cells.append(cell)
        lines.append(f"| `{role}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def access_changes(before: Access, after: Access) -> list[str]:
    """Connections that become possible, or stop being possible, for roles that exist before."""
    changes: list[str] = []
    for role in sorted(set(before.roles) & set(after.roles)):
        for db in sorted(set(before.owners) | set(after.owners)):
            was = before.connect(role, db) if db in before.owners else "—"
            now = after.connect(role, db) if db in after.owners else "—"
            if was == now:
                continue
            if was == "—":
                changes.append(f"⚠️ `{role}` GAINS access to `{db}` ({now})")
            elif now == "—":
                changes.append(f"`{role}` loses access to `{db}` (was {was})")
            else:
                changes.append(f"`{role}` → `{db}`: {was} → {now}")
    for db, privs in sorted(after.public_privileges.items()):
        if before.public_privileges.get(db) != privs:
            changes.append(f"⚠️ PUBLIC is granted {', '.join(privs)} on `{db}`")
    return changes


# --- the comment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    markdown: str
    destructive: list[tuple[str, str, str]]
    """(op, type, name) of database/role steps that would replace or delete."""


def _sorted_steps(steps: Iterable[Step]) -> list[Step]:
    order = {op: i for i, op in enumerate(OP_ORDER)}
    return sorted(steps, key=lambda s: (order.get(s.op, len(order)), s.type, s.name))


def _short_type(type_: str) -> str:
    """`postgresql:index/role:Role` → `postgresql:Role`."""
    package, _, rest = type_.partition(":")
    return f"{package}:{rest.rsplit(':', 1)[-1]}" if rest else type_


def _app_of_step(step: Step, parents: Mapping[str, str | None]) -> str:
    return app_of(step, parents) or "(stack-wide)"


LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


def plain_copies(digest: Digest) -> list[str]:
    """Secrets whose `kubectl apply` annotation (a plain copy of the whole object, data included)
    reaches the preview, and so the Pulumi state: the engine hides `data`, not annotations."""
    found: list[str] = []
    for step in digest.steps:
        for state in (step.old, step.new):
            if state is None or state.type != SECRET_TYPE:
                continue
            annotations = lookup(state.props, "metadata.annotations")
            if isinstance(annotations, Mapping) and annotations.get(LAST_APPLIED) not in (
                None,
                SECRET,
            ):
                label = state.id if state.external and state.id else state.name
                if label not in found:
                    found.append(label)
    return found


def find_destructive(digest: Digest, allowed: Iterable[str] = ()) -> list[tuple[str, str, str]]:
    """Database and role steps that would replace or delete, minus the `allowed` apps."""
    parents = parent_map(digest.steps)
    allowed_keys = {a.replace("-", "_") for a in allowed}
    found: list[tuple[str, str, str]] = []
    for step in digest.steps:
        if step.op in DESTRUCTIVE_OPS and step.type in (DATABASE_TYPE, ROLE_TYPE):
            app = app_of(step, parents) or ""
            state = step.old or step.new
            pg_name = state.props.get("name") if state else None
            if not {app.replace("-", "_"), str(pg_name)} & allowed_keys:
                found.append((step.op, step.type, step.name))
    return found


def _header(
    digest: Digest, stack: str | None, destructive: list[tuple[str, str, str]]
) -> list[str]:
    out = [
        f"<!-- postgres-apps-preview:{stack or 'default'} -->",
        "### postgres-apps preview" + (f" — stack `{stack}`" if stack else ""),
        "",
    ]
    counts: dict[str, int] = {}
    for step in digest.steps:
        counts[step.op] = counts.get(step.op, 0) + 1
    summary = digest.change_summary or counts
    planned = ", ".join(f"{n} to {op}" for op, n in sorted(summary.items()) if op not in QUIET_OPS)
    unchanged = f" ({summary['same']} unchanged)" if summary.get("same") else ""
    out += [f"**Plan:** {planned or 'no changes'}{unchanged}.", ""]
    if destructive:
        out += ["> [!CAUTION]", "> **Destructive database changes** (data or logins dropped):"]
        copied = {
            urn_name(step.urn).removesuffix(COPY_SUFFIX)
            for step in digest.steps
            if step.type == COPY_TYPE and step.op == "create"
        }
        first = " — a verified copy (`pg_dump`) is taken first"
        out += [
            f"> - `{op}` {_short_type(t)} `{name}`"
            + (
                first
                if (op, t, name.removesuffix("-database"))
                in {("delete", DATABASE_TYPE, app) for app in copied}
                else ""
            )
            for op, t, name in destructive
        ]
        out.append("")
    copies = plain_copies(digest)
    if copies:
        out += [
            "> [!WARNING]",
            "> Secret(s) with a `"
            + LAST_APPLIED
            + "` annotation: "
            + ", ".join(f"`{c}`" for c in copies)
            + ". It is a plain copy of the Secret's data (from `kubectl apply`) that Pulumi does "
            "not treat as secret: it ends up in the state and in `pulumi preview --json`. "
            "Re-create the Secret without it (`kubectl create`, Helm, or server-side apply).",
            "",
        ]
    problems = [
        (sev, msg)
        for sev, msg in digest.diagnostics
        if sev in ("error", "warning") and UNMANAGED_WARNING not in msg  # own section
    ]
    if problems:
        out += ["**Diagnostics**", ""]
        out += [f"- **{sev}**: {scrub(msg)}".replace("\n", " ") for sev, msg in problems[:20]]
        if len(problems) > 20:
            out.append(f"- … {len(problems) - 20} more")
        out.append("")
    if any(sev == "error" for sev, _ in problems):
        out += [
            "_The preview failed. `pulumi preview --json` does not carry policy violations: they "
            "are in Pulumi's own preview comment and in the job log._",
            "",
        ]
    return out


def _changes(digest: Digest) -> list[str]:
    parents = parent_map(digest.steps)
    out = ["#### Changes per app", ""]
    by_app: dict[str, list[Step]] = {}
    for step in digest.steps:
        if step.op not in QUIET_OPS:
            by_app.setdefault(app_of(step, parents) or "(stack-wide)", []).append(step)
    if not by_app:
        out += ["_No resource changes._", ""]
    for app in sorted(by_app, key=lambda a: (a == "(stack-wide)", a)):
        steps = _sorted_steps(by_app[app])
        ops: dict[str, int] = {}
        for step in steps:
            ops[step.op] = ops.get(step.op, 0) + 1
        head = ", ".join(f"{n} {op}" for op, n in ops.items())
        out += [f"<details><summary><b>{app}</b>: {head}</summary>", ""]
        out += ["| | resource | name | details |", "|---|---|---|---|"]
        for step in steps:
            details = change_details(step) if step.op not in ("create", "delete") else ""
            if step.op == "create" and step.new is not None and step.new.protect:
                details = "protected"
            out.append(
                f"| `{OP_SYMBOL.get(step.op, step.op)}` | {_short_type(step.type)} | "
                f"`{step.name}` | {details} |"
            )
        out += ["", "</details>", ""]
    return out


def before_after(digest: Digest) -> tuple[Access, Access]:
    """Access derived from the old states (what exists) and the new states (what will)."""
    before = [s.old for s in digest.steps if s.old is not None and s.op != "create"]
    after = [s.new for s in digest.steps if s.new is not None and s.op not in REMOVING_OPS]
    return derive_access(before), derive_access(after)


def _matrices(digest: Digest, before: Access, after: Access) -> list[str]:
    out = [
        "#### Who can connect to which database",
        "",
        "`owner`: the app's own role · `granted`: explicit CONNECT · `via PUBLIC`: CONNECT is not "
        "revoked from PUBLIC, so every role can connect · `—`: cannot connect. The admin "
        "(superuser) can connect everywhere.",
        "",
    ]
    if not any(s.op == "same" for s in digest.steps) and any(s.old for s in digest.steps):
        out += [
            "_Unchanged resources are not in this preview (run it with `--show-sames`): the "
            "matrices cover only what changes._",
            "",
        ]
    changes = access_changes(before, after)
    if changes:
        out += ["**Access changes**", ""] + [f"- {c}" for c in changes] + [""]
    out += ["<details><summary>BEFORE</summary>", ""]
    out.append(_matrix_table(before, None, sorted(before.roles), sorted(before.owners)))
    out += ["</details>", "", "**AFTER**", ""]
    out.append(_matrix_table(after, before, sorted(after.roles), sorted(after.owners)))
    return out


def _secrets(before: Access, after: Access, app_namespaces: Sequence[str]) -> list[str]:
    out = ["#### Where credentials land", ""]
    urns = sorted(set(before.secrets) | set(after.secrets), key=urn_name)
    if not urns:
        return [*out, "_No Secrets._", ""]
    out += ["| Secret | before | after | app | role |", "|---|---|---|---|---|"]
    roles = set(before.roles) | set(after.roles)
    for urn in urns:
        was, now = before.secrets.get(urn), after.secrets.get(urn)
        _, app, read_only = now or was or ("", "", False)
        role = app.replace("-", "_")
        after_cell = f"`{now[0]}`" if now else "— (removed)"
        if was and now and was[0] != now[0]:
            after_cell = f"**{after_cell}**"
        if read_only:
            app_cell, role_cell = "admin Secret, read only", "—"
        else:
            app_cell, role_cell = app or "—", f"`{role}`" if role in roles else "—"
            namespace = now[0].split("/", 1)[0] if now else None
            if namespace is not None and namespace not in app_namespaces:
                after_cell += f" ⚠️ not an app namespace ({', '.join(app_namespaces)})"
        out.append(
            f"| `{urn_name(urn)}` | {f'`{was[0]}`' if was else '—'} | {after_cell} | "
            f"{app_cell} | {role_cell} |"
        )
    out.append("")
    return out


def _report_text(value: Mapping[str, Any]) -> str:
    """One report (the stack output's shape) as a line."""
    if value.get("checked") is not True:
        reason = value.get("reason")
        return "not checked" + (f" ({scrub(str(reason))})" if reason else "")
    roles = [str(r) for r in value.get("roles") or []]
    databases = [str(d) for d in value.get("databases") or []]
    if not roles and not databases:
        return "none"

    def names(items: list[str]) -> str:
        return ", ".join(f"`{_inline(i)}`" for i in items) or "none"

    return f"⚠️ roles {names(roles)}; databases {names(databases)}"


def _stack_report(digest: Digest, old: bool) -> Mapping[str, Any] | None:
    for step in digest.steps:
        state = step.old if old else step.new
        if state is not None and state.type == STACK_TYPE:
            value = state.props.get(UNMANAGED_OUTPUT)
            if isinstance(value, Mapping) and UNKNOWN not in json.dumps(value):
                return value
    return None


def unmanaged_lines(digest: Digest) -> list[str]:
    """What the preview says about roles and databases no app declares: this preview's own read
    (its diagnostics: the program logs the report; the engine's preview JSON carries no new
    stack outputs) and the last `up`'s (the Stack's old outputs). Empty when it says nothing."""
    now: str | None = None
    current = _stack_report(digest, old=False)
    if current is not None:
        now = _report_text(current)
    for _, message in digest.diagnostics:
        text = " ".join(message.split())
        if UNMANAGED_WARNING in text:
            now = "⚠️ " + scrub(text[text.index(UNMANAGED_WARNING) + len(UNMANAGED_WARNING) :])
        elif UNMANAGED_NOT_CHECKED in text and now is None:
            now = f"not checked {scrub(text.split(UNMANAGED_NOT_CHECKED, 1)[1].strip())}"
        elif UNMANAGED_NONE in text and now is None:
            now = "none"
    previous = _stack_report(digest, old=True)
    if now is None and previous is None:
        return []
    out = [
        "#### Unmanaged on the server",
        "",
        "Roles and databases on the PostgreSQL server that no app of this stack declares "
        f"(system ones, the admin and the ignore-lists left out; `{UNMANAGED_RUNBOOK}`).",
        "",
    ]
    out.append(f"- **this preview**: {now or 'not reported (the program logged nothing)'}")
    if previous is not None:
        out.append(f"- **last `up`**: {_report_text(previous)}")
    out.append("")
    return out


def render(
    digest: Digest,
    stack: str | None = None,
    allowed: Iterable[str] = (),
    app_namespaces: Sequence[str] = ("apps",),
) -> Report:
    """The whole comment (Markdown) and the destructive steps it warns about."""
    destructive = find_destructive(digest, allowed)
    before, after = before_after(digest)
    out = _header(digest, stack, destructive) + _changes(digest) + _matrices(digest, before, after)
    out += _secrets(before, after, app_namespaces)
    out += unmanaged_lines(digest)
    out.append(
        "<sub>Secret values are never shown (the preview carries only `[secret]`). "
        "Generated by `tools/preview_comment.py`.</sub>"
    )
    return Report(markdown="\n".join(out) + "\n", destructive=destructive)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.preview_comment",
        description="Turn `pulumi preview --json` into the pull-request comment (Markdown).",
    )
    parser.add_argument("preview", help="the preview JSON file, or - for standard input")
    parser.add_argument("--stack", help="stack name shown in the title and the comment marker")
    parser.add_argument(
        "--fail-on-destructive",
        action="store_true",
        help="exit 3 when a database or role would be replaced or deleted",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="APP",
        help="an app whose destructive change is accepted (repeatable)",
    )
    parser.add_argument(
        "--app-namespace",
        action="append",
        dest="app_namespaces",
        metavar="NAMESPACE",
        help="a namespace where app credentials belong (repeatable; default: apps)",
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.preview == "-" else Path(args.preview).read_text()
        digest = parse_digest(json.loads(text))
    except (OSError, json.JSONDecodeError, DigestError) as exc:
        print(f"preview_comment: cannot read {args.preview}: {exc}", file=sys.stderr)
        return 2
    report = render(digest, args.stack, args.allow, args.app_namespaces or ["apps"])
    sys.stdout.write(report.markdown)
    if args.fail_on_destructive and report.destructive:
        names = ", ".join(f"{op} {name}" for op, _, name in report.destructive)
        print(f"preview_comment: destructive database changes: {names}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

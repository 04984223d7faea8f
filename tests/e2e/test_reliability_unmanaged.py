"""What nobody manages: roles and databases made by hand on the server are reported.

One stack (`rel-unmanaged`) with one app (`rel-un-app`, `deletion: drop`). As admin, by hand: a
login role `rel_un_app_user`, a NOLOGIN group role `rel_un_group` and a database
`rel_un_app_test_db` owned by the login role (the leftovers of a manual set-up). Every `up` must
list exactly those (among the suite's `rel_un_` names: other suites' stacks share the server, and
their apps are unmanaged from this stack's view), never the app's own role and database, never a
system name; the warning line names them; the ignore-lists hide them; once dropped they are gone.
Tests run in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from postgres_apps.inventory import NONE_MESSAGE, OUTPUT_NAME, WARNING_PREFIX
from tests.e2e.harness import ProjectStack, new_stack, query, secret_data
from tests.e2e.reliability_support import (
    admin_exec,
    cli,
    connect_as,
    delete_namespaces,
    export_state,
    purge_leftovers,
    rel_config,
)

NAMESPACE = "rel-unmanaged"
PREFIX = "rel_un_"
APP = {"name": "rel-un-app", "deletion": "drop"}
MANAGED = "rel_un_app"
LOGIN_ROLE = "rel_un_app_user"
GROUP_ROLE = "rel_un_group"
DATABASE = "rel_un_app_test_db"
SYSTEM_DATABASES = {"postgres", "template0", "template1"}


LEGACY = {"name": "rel-un-legacy", "deletion": "drop"}
"""The hand-made pair in the runbook's shape (role and database `rel_un_legacy`), adopted."""


def config(apps: list[dict[str, Any]] | None = None, **unmanaged: Any) -> dict[str, Any]:
    cfg = rel_config(apps or [APP], NAMESPACE, rerun="on-change")
    if unmanaged:
        cfg["postgres-apps:unmanaged"] = unmanaged
    return cfg


def suite_names(names: list[str]) -> set[str]:
    return {n for n in names if n.startswith(PREFIX)}


def warning_lines(text: str) -> list[str]:
    """The warning as the CLI prints it: once where it happens, once under `Diagnostics:`."""
    lines = [line for line in text.splitlines() if WARNING_PREFIX in line]
    assert len({line.strip().removeprefix("warning: ") for line in lines}) <= 2, lines
    return lines


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    purge_leftovers(PREFIX, NAMESPACE)
    s = new_stack(tmp_path_factory.mktemp("unmanaged"), "rel-unmanaged")
    admin_exec(f"CREATE ROLE {LOGIN_ROLE} LOGIN PASSWORD 'rel-un-hand-made-Pw-0123456789'")
    admin_exec(f"CREATE ROLE {GROUP_ROLE} NOLOGIN")
    admin_exec(f"CREATE DATABASE {DATABASE} OWNER {LOGIN_ROLE}")
    # closed to PUBLIC as a careful operator would: left open, every app's gate would (rightly)
    # fail isolation naming it — that finding is test_reliability_isolation's; this module is
    # about the report
    admin_exec(f"REVOKE CONNECT, TEMPORARY ON DATABASE {DATABASE} FROM PUBLIC")
    s.write_config(config())
    try:
        yield s
    finally:
        try:
            s.write_config(config())
            s.stack.destroy(on_output=print, color="never")
            s.stack.workspace.remove_stack(s.name)
        finally:
            purge_leftovers(PREFIX)
            delete_namespaces(NAMESPACE)


@pytest.fixture(scope="module")
def first_up(stack: ProjectStack) -> str:
    """The engine output of the first `up` (the hand-made objects exist before it)."""
    return stack.up().stdout


def test_up_lists_exactly_the_hand_made_objects(stack: ProjectStack, first_up: str) -> None:
    report = stack.outputs()[OUTPUT_NAME]
    assert report["checked"] is True, report
    assert suite_names(report["roles"]) == {LOGIN_ROLE, GROUP_ROLE}, report
    assert suite_names(report["databases"]) == {DATABASE}, report
    assert MANAGED not in report["roles"] and MANAGED not in report["databases"]
    assert not [r for r in report["roles"] if r.startswith("pg_")]
    assert "postgres" not in report["roles"]
    assert not SYSTEM_DATABASES & set(report["databases"])
    assert "reason" not in report
    assert not stack.stack.outputs()[OUTPUT_NAME].secret


def test_up_warns_with_their_names(first_up: str) -> None:
    lines = warning_lines(first_up)
    assert lines, first_up[-3000:]
    for line in lines:
        for name in (LOGIN_ROLE, GROUP_ROLE, DATABASE):
            assert f'"{name}"' in line, line
        assert f'"{MANAGED}"' not in line, line
        assert "docs/runbooks/postgres-connectivity.md#unmanaged" in line
    assert "rel-un-hand-made-Pw" not in first_up


def test_preview_with_the_admin_endpoint_reads_them_too(stack: ProjectStack) -> None:
    result = stack.preview()
    # the diff display prints the engine's diagnostics on stderr (pulumi/pulumi#20632)
    shown = f"{result.stdout}\n{result.stderr}"
    lines = warning_lines(shown)
    assert lines, shown[-3000:]
    for line in lines:
        assert f'"{LOGIN_ROLE}"' in line and f'"{DATABASE}"' in line, line
    assert "not checked" not in shown


def test_the_ignore_lists_hide_them(stack: ProjectStack) -> None:
    stack.write_config(config(ignoreRoles=[GROUP_ROLE], ignoreDatabases=[DATABASE]))
    try:
        stack.up()
        report = stack.outputs()[OUTPUT_NAME]
    finally:
        stack.write_config(config())
    assert suite_names(report["roles"]) == {LOGIN_ROLE}, report
    assert suite_names(report["databases"]) == set(), report


def _resource(state: dict[str, Any], type_: str, name: str) -> dict[str, Any]:
    """The one resource of this type and name in `pulumi stack export`."""
    found: list[dict[str, Any]] = [
        r for r in state["resources"] if r["type"] == type_ and r["urn"].endswith(f"::{name}")
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_runbooks_adoption_imports_a_hand_made_pair(stack: ProjectStack) -> None:
    """docs/runbooks/postgres-connectivity.md#unmanaged, "Adopt it into the stack", step by step
    with the import file as the runbook shows it: the role and database made by hand (with data)
    are the app's afterwards — same oids, the data kept, the stack's password, the gate green."""
    legacy = "rel_un_legacy"
    admin_exec(f"CREATE ROLE {legacy} LOGIN PASSWORD 'rel-un-legacy-by-hand-0123456789'")
    admin_exec(f"CREATE DATABASE {legacy} OWNER {legacy}")
    admin_exec(f"REVOKE CONNECT, TEMPORARY ON DATABASE {legacy} FROM PUBLIC")
    admin_exec(f"SET ROLE {legacy}; CREATE TABLE kept (note text)", dbname=legacy)
    admin_exec("INSERT INTO kept VALUES ('made by hand')", dbname=legacy)
    oids = query(
        "SELECT (SELECT oid FROM pg_roles WHERE rolname = %s), "
        "(SELECT oid FROM pg_database WHERE datname = %s)",
        legacy,
        legacy,
    )
    state = export_state(stack)
    provider = _resource(state, "pulumi:providers:postgresql", "postgres-admin")
    component = _resource(state, "postgres-apps:apps:PostgresApps", "postgres-apps")
    adopt = {
        "nameTable": {"pg": provider["urn"], "apps": component["urn"]},
        "resources": [
            {
                "type": "postgres-apps:app_database:AppDatabase",
                "name": LEGACY["name"],
                "component": True,
                "parent": "apps",
            },
            {
                "type": "postgresql:index/role:Role",
                "name": f"{LEGACY['name']}-role",
                "id": legacy,
                "parent": LEGACY["name"],
                "provider": "pg",
            },
            {
                "type": "postgresql:index/database:Database",
                "name": f"{LEGACY['name']}-database",
                "id": legacy,
                "parent": LEGACY["name"],
                "provider": "pg",
            },
        ],
    }
    (stack.work_dir / "adopt.json").write_text(json.dumps(adopt))
    stack.write_config(config([APP, LEGACY]))  # step 1: the entry, no `up` yet
    imported = cli(stack, "import", "-f", "adopt.json", "--yes", "--generate-code=false")
    assert imported.returncode == 0, imported.stdout[-3000:] + imported.stderr[-3000:]
    stack.up()  # step 3
    assert (
        query(
            "SELECT (SELECT oid FROM pg_roles WHERE rolname = %s), "
            "(SELECT oid FROM pg_database WHERE datname = %s)",
            legacy,
            legacy,
        )
        == oids
    ), "adopted, not recreated"
    data = secret_data(NAMESPACE, f"{LEGACY['name']}-db-credentials")
    with connect_as(data["user"], data["password"], data["dbname"]) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("made by hand",)]
    outputs = stack.outputs()
    assert "checksPassed" in outputs["apps"][LEGACY["name"]]["verification"]
    report = outputs[OUTPUT_NAME]
    assert legacy not in report["roles"] and legacy not in report["databases"], report
    stack.write_config(config())
    stack.up()  # retired again (`deletion: drop`, so its copy is taken first)
    assert query("SELECT count(*) FROM pg_roles WHERE rolname = %s", legacy) == [(0,)]


def test_once_dropped_they_are_no_longer_listed(stack: ProjectStack) -> None:
    admin_exec(f"DROP DATABASE {DATABASE} WITH (FORCE)")
    admin_exec(f"DROP ROLE {LOGIN_ROLE}")
    admin_exec(f"DROP ROLE {GROUP_ROLE}")
    text = stack.up().stdout
    report = stack.outputs()[OUTPUT_NAME]
    assert report["checked"] is True
    assert suite_names(report["roles"]) == set(), report
    assert suite_names(report["databases"]) == set(), report
    # other suites' stacks may still have apps on the server: then the warning names only those
    for line in warning_lines(text):
        assert PREFIX not in line, line
    if not report["roles"] and not report["databases"]:
        assert NONE_MESSAGE in text

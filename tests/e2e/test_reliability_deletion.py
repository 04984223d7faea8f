"""Deletion safety: data is never dropped by accident.

One stack (`rel-delete`) with four apps, each holding a row of data written with its own
credentials: `rel-de-keep` and `rel-de-other` (protected, the default), `rel-de-drop`
(`deletion: drop`) and `rel-de-retain` (`deletion: retain`). Tests run in file order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from postgres_apps.retention import OUTPUT_NAME, retire_message
from tests.e2e.harness import (
    ProjectStack,
    assert_lines_in,
    kubectl,
    new_stack,
    query,
    secret_data,
)
from tests.e2e.reliability_support import (
    admin_exec,
    connect_as,
    database_exists,
    delete_namespaces,
    purge_leftovers,
    rel_config,
    role_exists,
    secret_version,
    world,
)

NAMESPACE = "rel-delete"
PROTECTED_DELETE = re.compile(
    # The engine's refusal (Pulumi 3.274.1, pkg/resource/deploy/step.go: deleteProtectedError)
    # for a protected role or database of one of the protected apps.
    r'resource "urn:pulumi:[^"]*::rel-de-(?:keep|other)-(?:role|database)" cannot be deleted\s+'
    r"because it is protected\. To unprotect the resource, either remove the `protect` flag"
)
KEEP = {"name": "rel-de-keep"}
OTHER = {"name": "rel-de-other", "profile": "paperless"}
DROP = {"name": "rel-de-drop", "deletion": "drop", "extensions": ["citext"]}
"""Its data uses the extension (a citext column): the drop must not stop at DROP EXTENSION."""
RETAIN = {"name": "rel-de-retain", "deletion": "retain"}
APPS: list[dict[str, Any]] = [KEEP, OTHER, DROP, RETAIN]


def config(apps: list[dict[str, Any]]) -> dict[str, Any]:
    return rel_config(apps, NAMESPACE, rerun="on-change")


def db(app: dict[str, Any]) -> str:
    return str(app["name"]).replace("-", "_")


def rows(app: dict[str, Any]) -> list[tuple[Any, ...]]:
    return query("SELECT note FROM rel_data ORDER BY note", dbname=db(app))


def identity(app: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change for an app that is not touched: oids, Secret version, data."""
    role_oid = query("SELECT oid FROM pg_roles WHERE rolname = %s", db(app))
    db_oid = query("SELECT oid FROM pg_database WHERE datname = %s", db(app))
    return (
        role_oid,
        db_oid,
        secret_version(NAMESPACE, f"{app['name']}-db-credentials"),
        rows(app),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    purge_leftovers("rel_de_", NAMESPACE)
    s = new_stack(tmp_path_factory.mktemp("delete"), "rel-delete")
    s.write_config(config(APPS))
    s.up()
    for app in APPS:
        data = secret_data(NAMESPACE, f"{app['name']}-db-credentials")
        with connect_as(data["user"], data["password"], data["dbname"]) as conn:
            conn.execute("CREATE TABLE rel_data (note text)")
            conn.execute("INSERT INTO rel_data VALUES (%s)", (f"data of {app['name']}",))
            if "citext" in app.get("extensions", []):
                conn.execute("CREATE TABLE rel_tags (tag citext)")
                conn.execute("INSERT INTO rel_tags VALUES ('Mixed Case')")
    yield s
    try:
        s.write_config(config([{**a, "deletion": "drop"} for a in (KEEP, OTHER)]))
        s.stack.up(on_output=print, color="never", refresh=True)
        s.stack.destroy(on_output=print, color="never")
        s.stack.workspace.remove_stack(s.name)
    finally:
        for app in (DROP, RETAIN):
            admin_exec(f"DROP DATABASE IF EXISTS {db(app)}")
            admin_exec(f"DROP ROLE IF EXISTS {db(app)}")
        delete_namespaces(NAMESPACE)


def test_removing_a_protected_app_is_refused_with_the_retire_procedure(
    stack: ProjectStack,
) -> None:
    before = world(stack, "rel-de")
    managed = stack.outputs()[OUTPUT_NAME]  # what the program reads back and quotes
    stack.write_config(config([OTHER, DROP, RETAIN]))  # rel-de-keep removed
    try:
        with pytest.raises(auto.CommandError) as err:
            stack.up()
    finally:
        stack.write_config(config(APPS))
    # every line of the program's own message for exactly this removal
    expected = retire_message([("rel-de-keep", managed["rel-de-keep"])]).splitlines()
    assert expected[0].startswith('refusing to remove "rel-de-keep"'), expected
    assert "pg_dump -Fc -d rel_de_keep -f rel_de_keep.dump" in "\n".join(expected), expected
    assert_lines_in(expected, str(err.value))
    assert before.differences(world(stack, "rel-de")) == []
    assert rows(KEEP) == [("data of rel-de-keep",)]


def test_refused_removal_with_an_added_app_creates_nothing(stack: ProjectStack) -> None:
    """One change removes a protected app and adds another: the refusal comes before anything
    is registered, so the added app's role, database and Secret are not created either."""
    before = world(stack, "rel-de")
    added = {"name": "rel-de-added"}
    stack.write_config(config([OTHER, DROP, RETAIN, added]))  # rel-de-keep removed, one added
    try:
        with pytest.raises(auto.CommandError) as err:
            stack.up()
    finally:
        stack.write_config(config(APPS))
    text = str(err.value)
    assert 'refusing to remove "rel-de-keep"' in text, text[-3000:]
    assert not role_exists("rel_de_added")
    assert not database_exists("rel_de_added")
    assert secret_version(NAMESPACE, "rel-de-added-db-credentials") is None
    assert before.differences(world(stack, "rel-de")) == []


def test_opted_in_drop_removes_only_that_app(stack: ProjectStack) -> None:
    untouched = {a["name"]: identity(a) for a in (KEEP, OTHER, RETAIN)}
    stack.write_config(config([KEEP, OTHER, RETAIN]))  # rel-de-drop removed, opted into drop
    stack.up()  # its citext column would make a DROP EXTENSION (RESTRICT) fail: it is not run
    assert not database_exists(db(DROP))
    assert not role_exists(db(DROP))
    assert secret_version(NAMESPACE, "rel-de-drop-db-credentials") is None
    for app in (KEEP, OTHER, RETAIN):
        assert identity(app) == untouched[app["name"]], app["name"]


def test_retain_keeps_database_and_role_and_stops_managing_them(stack: ProjectStack) -> None:
    keep_before = identity(KEEP)
    stack.write_config(config([KEEP, OTHER]))  # rel-de-retain removed, policy retain
    stack.up()
    assert database_exists(db(RETAIN)) and role_exists(db(RETAIN))
    assert rows(RETAIN) == [("data of rel-de-retain",)]
    deployment = stack.stack.export_stack().deployment or {}
    urns = [r["urn"] for r in deployment.get("resources") or []]
    assert not any("rel-de-retain" in urn for urn in urns), "still managed"
    assert identity(KEEP) == keep_before
    # The Secret is kept too, and its credentials still work: the app keeps running.
    data = secret_data(NAMESPACE, "rel-de-retain-db-credentials")
    with connect_as(data["user"], data["password"], data["dbname"]) as conn:
        assert conn.execute("SELECT note FROM rel_data").fetchall() == [("data of rel-de-retain",)]


def test_destroy_never_drops_a_protected_database(stack: ProjectStack) -> None:
    with pytest.raises(auto.CommandError) as err:
        stack.stack.destroy(on_output=print, color="never")
    text = str(err.value)
    assert PROTECTED_DELETE.search(text), text[-3000:]
    for app in (KEEP, OTHER):
        assert database_exists(db(app)) and role_exists(db(app))
        assert rows(app) == [(f"data of {app['name']}",)]
    # the stack converges again (whatever destroy removed before it stopped is recreated)
    stack.write_config(config([KEEP, OTHER]))
    stack.stack.up(on_output=print, color="never", refresh=True)
    for app in (KEEP, OTHER):
        data = secret_data(NAMESPACE, f"{app['name']}-db-credentials")
        with connect_as(data["user"], data["password"], data["dbname"]) as conn:
            assert conn.execute("SELECT count(*) FROM rel_data").fetchone() == (1,)
    assert kubectl("get", "namespace", NAMESPACE).returncode == 0

"""Deletion safety: data is never dropped by accident.

One stack (`rel-delete`) with four apps, each holding a row of data written with its own
credentials: `rel-de-keep` and `rel-de-other` (protected, the default), `rel-de-drop`
(`deletion: drop`, plus 100 000 rows: its copy is timed) and `rel-de-retain` (`deletion:
retain`). Tests run in file order; the last one restores the drop app's copy into a new app with
the runbook's own procedure.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from postgres_apps.retention import OUTPUT_NAME, retire_message
from postgres_apps.retirement import OUTPUT_NAME as COPIES
from tests.e2e.harness import (
    ADMIN_PORT,
    ProjectStack,
    assert_lines_in,
    kubectl,
    new_stack,
    query,
    secret_data,
)
from tests.e2e.reliability_support import (
    admin_exec,
    admin_secret_value,
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
RESTORED = {"name": "rel-de-restored", "deletion": "drop", "extensions": ["citext"]}
"""The new app the drop app's copy is restored into (last test)."""
BULK_ROWS = 100_000
RUNBOOK = Path(__file__).parents[2] / "docs/runbooks/postgres-connectivity.md"
RESTORE_MARKER = "<!-- restore-procedure:"


def config(apps: list[dict[str, Any]], copies: str | None = None) -> dict[str, Any]:
    cfg = rel_config(apps, NAMESPACE, rerun="on-change")
    if copies is not None:
        cfg["postgres-apps:retirement"] = {"directory": copies}
    return cfg


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
            if app is DROP:
                conn.execute("CREATE TABLE rel_bulk (id bigint PRIMARY KEY, body text)")
                conn.execute(
                    "INSERT INTO rel_bulk SELECT g, md5(g::text) FROM generate_series(1, %s) g",
                    (BULK_ROWS,),
                )
    yield s
    try:
        s.write_config(config([{**a, "deletion": "drop"} for a in (KEEP, OTHER)]))
        s.stack.up(on_output=print, color="never", refresh=True)
        s.stack.destroy(on_output=print, color="never")
        s.stack.workspace.remove_stack(s.name)
    finally:
        for app in (DROP, RETAIN, RESTORED):
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
    assert "a verified pg_dump is taken into" in "\n".join(expected), expected
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


def test_a_drop_without_a_verified_copy_is_refused(stack: ProjectStack) -> None:
    """The copy cannot be written (its directory would be under a regular file): `up` fails
    with the copy's message and nothing is dropped, not even the app's Secret."""
    before = world(stack, "rel-de")
    blocker = stack.work_dir / "not-a-directory"
    blocker.write_text("a file\n")
    stack.write_config(config([KEEP, OTHER, RETAIN], copies=str(blocker / "copies")))
    try:
        with pytest.raises(auto.CommandError) as err:
            stack.up()
    finally:
        stack.write_config(config(APPS))
    text = str(err.value)
    assert (
        'retirement copy of app "rel-de-drop" (database "rel_de_drop") failed: cannot create '
        f"postgres-apps:retirement.directory {blocker / 'copies'}"
    ) in text, text[-3000:]
    assert "Nothing was dropped: the database and its role stay until a copy verifies." in text
    # (the dynamic provider's recorded config holds the changed stack config: not a change)
    assert before.differences(world(stack, "rel-de"), ignore_providers=True) == []
    assert query("SELECT count(*) FROM rel_bulk", dbname=db(DROP)) == [(BULK_ROWS,)]
    assert COPIES not in stack.outputs() or "rel-de-drop" not in stack.outputs()[COPIES]


def test_opted_in_drop_removes_only_that_app(stack: ProjectStack) -> None:
    untouched = {a["name"]: identity(a) for a in (KEEP, OTHER, RETAIN)}
    stack.write_config(config([KEEP, OTHER, RETAIN]))  # rel-de-drop removed, opted into drop
    started = time.monotonic()
    stack.up()  # its citext column would make a DROP EXTENSION (RESTRICT) fail: it is not run
    print(f"retire up with a copy of {BULK_ROWS} rows: {time.monotonic() - started:.1f} s")
    copy = stack.outputs()[COPIES]["rel-de-drop"]
    dump = Path(copy["file"])
    # the default directory, in the project directory; the record is the file's
    assert dump.parent == stack.work_dir / "retired-copies", copy
    assert copy["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert copy["bytes"] == dump.stat().st_size
    assert copy["tableData"] == 3, copy  # rel_data, rel_tags, rel_bulk
    print(f"copy of rel_de_drop: {copy['bytes']} bytes, pg_dump + verify {copy['dumpMs']} ms")
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


def _restore_procedure() -> str:
    """The runbook's restore block, exactly as an operator copies it."""
    text = RUNBOOK.read_text()
    after = text[text.index(RESTORE_MARKER) :]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("```", start)]


def test_the_runbooks_restore_brings_the_rows_back_owned_by_the_new_role(
    stack: ProjectStack,
) -> None:
    """Runs after every other test: the drop app's record survived the later runs, and the
    runbook's procedure restores its copy into a new app, whose role owns what comes back."""
    copy = stack.outputs()[COPIES]["rel-de-drop"]
    stack.write_config(config([KEEP, OTHER, RESTORED]))
    stack.up()
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": "127.0.0.1",
        "PGPORT": str(ADMIN_PORT),
        "PGUSER": "postgres",
        "PGPASSWORD": admin_secret_value(),
        "COPY": copy["file"],
        "SHA256": copy["sha256"],
        "NEW_APP": RESTORED["name"],
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", _restore_procedure()], env=env, capture_output=True, text=True, check=False
    )
    print(f"restore of {BULK_ROWS} rows: {time.monotonic() - started:.2f} s")
    assert done.returncode == 0, done.stderr
    new = db(RESTORED)
    assert query("SELECT count(*) FROM rel_bulk", dbname=new) == [(BULK_ROWS,)]
    assert query("SELECT note FROM rel_data", dbname=new) == [("data of rel-de-drop",)]
    owners = query(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'S') ORDER BY 1",
        dbname=new,
    )
    assert {name for name, _ in owners} >= {"rel_bulk", "rel_bulk_pkey", "rel_data", "rel_tags"}
    assert {owner for _, owner in owners} == {new}, owners
    # the app itself reads it with its own Secret
    data = secret_data(NAMESPACE, f"{RESTORED['name']}-db-credentials")
    with connect_as(data["user"], data["password"], data["dbname"]) as conn:
        assert conn.execute("SELECT tag FROM rel_tags").fetchall() == [("Mixed Case",)]
        conn.execute("INSERT INTO rel_bulk VALUES (0, 'written by the restored app')")

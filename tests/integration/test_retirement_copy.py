"""The copy `deletion: drop` takes before dropping, against a real PostgreSQL 15 (pg_server.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg import sql

from postgres_apps.retirement import CopyFailedError, CopyTarget, take_copy

from .helpers import AppPair
from .pg_server import PgServer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 21, 0, 0, tzinfo=UTC)


def target(pg: PgServer, database: str, directory: Path, **changes: object) -> CopyTarget:
    fields: dict[str, object] = {
        "app": database.replace("_", "-"),
        "database": database,
        "host": pg.host,
        "port": pg.port,
        "user": pg.admin_user,
        "sslmode": "disable",
        "directory": str(directory),
        **changes,
    }
    return CopyTarget(**fields)  # type: ignore[arg-type]


def test_copy_is_a_verified_custom_dump_of_that_database(
    pg: PgServer, apps: AppPair, tmp_path: Path
) -> None:
    db = apps.app.database
    pg.execute(
        sql.SQL("CREATE TABLE notes (id int PRIMARY KEY, body text)"),
        sql.SQL("INSERT INTO notes SELECT g, 'row ' || g FROM generate_series(1, 1000) g"),
        dbname=db,
    )
    record = take_copy(target(pg, db, tmp_path / "copies"), pg.admin_password, now=NOW)
    dump = Path(record["file"])
    assert dump == tmp_path / "copies" / f"{db}-20261202T210000Z.dump"
    assert record["size_bytes"] == dump.stat().st_size > 0
    assert record["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert record["table_data"] == 1  # notes
    assert record["toc_entries"] >= 3  # table, its data, its primary key
    assert not list((tmp_path / "copies").glob("*.partial"))
    sidecar = json.loads(Path(f"{dump}.json").read_text())
    assert sidecar["sha256"] == record["sha256"] and sidecar["database"] == db
    # what the archive holds, read by pg_restore on its own
    listing = subprocess.run(
        [str(pg.bin / "pg_restore"), "--list", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE DATA public notes" in listing
    assert pg.admin_password not in dump.read_bytes().decode("latin-1")


def test_a_database_that_is_gone_fails_the_copy_and_leaves_no_file(
    pg: PgServer, tmp_path: Path
) -> None:
    with pytest.raises(CopyFailedError) as err:
        take_copy(target(pg, "no_such_db", tmp_path), pg.admin_password, now=NOW)
    text = str(err.value)
    assert text.startswith('retirement copy of app "no-such-db" (database "no_such_db") failed')
    assert 'database "no_such_db" does not exist' in text
    assert "Nothing was dropped" in text and "postgres-apps:retired" in text
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_password_fails_the_copy_without_showing_it(
    pg: PgServer, apps: AppPair, tmp_path: Path
) -> None:
    wrong = "not-the-admin-password-0123"
    with pytest.raises(CopyFailedError) as err:
        take_copy(target(pg, apps.app.database, tmp_path), wrong, now=NOW)
    assert "password authentication failed" in str(err.value)
    assert wrong not in str(err.value)


def test_a_directory_that_cannot_be_made_fails_the_copy(
    pg: PgServer, apps: AppPair, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(CopyFailedError) as err:
        take_copy(target(pg, apps.app.database, blocker / "copies"), pg.admin_password, now=NOW)
    assert f"cannot create postgres-apps:retirement.directory {blocker / 'copies'}" in str(
        err.value
    )


def test_a_dump_of_another_database_does_not_verify(
    pg: PgServer, apps: AppPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script reads the archive's own header: a file that is a valid dump, but of another
    database than the one about to be dropped, is refused (a pg_dump on PATH that dumps the
    other app's database stands in for any mix-up) and no copy is left."""
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("pg_dump")
    assert real is not None
    (shim / "pg_dump").write_text(f'#!/bin/sh\nexec {real} "$@" --dbname={apps.other.database}\n')
    (shim / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    copies = tmp_path / "copies"
    with pytest.raises(CopyFailedError) as err:
        take_copy(target(pg, apps.app.database, copies), pg.admin_password, now=NOW)
    assert f"the dump names database '{apps.other.database}', not '{apps.app.database}'" in str(
        err.value
    )
    assert list(copies.iterdir()) == []

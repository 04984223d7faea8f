"""Retire with a tested copy: `deletion: drop` takes a verified `pg_dump` before anything drops.

When an app whose last policy was `drop` leaves the config, the program (which reads the previous
`managedApps`, see `retention.py`) registers one `RetirementCopy` for it. Its create runs
`pg_dump -Fc` of the app's database on the Pulumi host, reads the dump back with
`pg_restore --list` (it must be a custom-format archive of that database), and records its size
and SHA-256. The engine deletes the app's role and database only after the program has finished,
and the program finishes only after every create has returned (the Python SDK waits for its
outstanding registrations); a copy that fails fails the program, and a failed program makes the
engine skip every delete: nothing is dropped without a verified copy. The copies' records are the
stack output `retirementCopies`, carried from run to run.

Deleting a `RetirementCopy` (the run after the retirement, when the app is gone from the previous
`managedApps` too) never touches the dump: the file is the point.

Not covered: `pulumi destroy` runs no program, so it drops `drop` apps without a copy (the
runbook says so); the dump runs where Pulumi runs, not as a pod in the cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi.dynamic

OUTPUT_NAME: Final = "retirementCopies"
RUNBOOK: Final = "docs/runbooks/postgres-connectivity.md#retiring-an-app"
DUMP_TIMEOUT_SECONDS: Final = 3600
RECORD_KEYS: Final = (
    "file",
    "size_bytes",
    "sha256",
    "toc_entries",
    "table_data",
    "taken_at",
    "dump_ms",
)
"""What a copy's record holds (the `retirementCopies` output, per app)."""


class CopyFailedError(RuntimeError):
    """The copy could not be taken or did not verify: the database is not dropped."""


@dataclass(frozen=True)
class CopyTarget:
    """Which database to copy, through which admin connection, to where."""

    app: str
    database: str
    host: str
    port: int
    user: str
    sslmode: str
    directory: str


def _refuse(target: CopyTarget, why: str) -> CopyFailedError:
    return CopyFailedError(
        f'retirement copy of app "{target.app}" (database "{target.database}") failed: {why}. '
        "Nothing was dropped: the database and its role stay until a copy verifies. Fix the "
        "cause and run pulumi up again; if the database is already gone, list the app in "
        f"postgres-apps:retired. See {RUNBOOK}."
    )


def _run(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - a fixed program, arguments never go through a shell
        list(argv),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=DUMP_TIMEOUT_SECONDS,
        check=False,
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def take_copy(target: CopyTarget, password: str, now: datetime | None = None) -> dict[str, Any]:
    """Dump `target.database` (custom format), verify the archive, return its record.

    The password travels in the child's environment (`PGPASSWORD`), never on a command line; the
    dump is written as `<name>.partial` and renamed only once it has verified."""
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if pg_dump is None or pg_restore is None:
        raise _refuse(
            target,
            "pg_dump/pg_restore not found on the Pulumi host (install the PostgreSQL client, "
            "at least the server's major version)",
        )
    directory = Path(target.directory).expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        where = f"postgres-apps:retirement.directory {directory}"
        raise _refuse(target, f"cannot create {where}: {err}") from err
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    final = directory / f"{target.database}-{stamp}.dump"
    partial = final.with_name(final.name + ".partial")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGPASSWORD": password,
        "PGSSLMODE": target.sslmode,
        "PGCONNECT_TIMEOUT": "10",
    }
    started = time.monotonic()
    dump = _run(
        [
            pg_dump,
            "--format=custom",
            "--no-password",
            f"--host={target.host}",
            f"--port={target.port}",
            f"--username={target.user}",
            f"--dbname={target.database}",
            f"--file={partial}",
        ],
        env,
    )
    dump_ms = round((time.monotonic() - started) * 1000)
    try:
        if dump.returncode != 0:
            raise _refuse(target, f"pg_dump exited {dump.returncode}: {_last_line(dump.stderr)}")
        record = _verified(target, partial, pg_restore, env)
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    record.update({"file": str(final), "taken_at": stamp, "dump_ms": dump_ms})
    final.with_name(final.name + ".json").write_text(
        json.dumps({"app": target.app, "database": target.database, **record}, indent=2) + "\n"
    )
    return record


def _verified(
    target: CopyTarget, archive: Path, pg_restore: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """Size, SHA-256 and table of contents of a dump, or `CopyFailedError` if it is not one of
    `target.database` (empty, unreadable, not a custom-format archive, another database)."""
    size = archive.stat().st_size if archive.exists() else 0
    if size == 0:
        raise _refuse(target, f"pg_dump wrote nothing to {archive}")
    listing = _run([pg_restore, "--list", str(archive)], env)
    if listing.returncode != 0:
        raise _refuse(
            target, f"pg_restore --list cannot read the dump: {_last_line(listing.stderr)}"
        )
    header = re.search(r"^;\s+dbname:\s*(\S+)\s*$", listing.stdout, re.MULTILINE | re.IGNORECASE)
    if header is None or header.group(1) != target.database:
        found = header.group(1) if header else "none"
        raise _refuse(target, f"the dump names database {found!r}, not {target.database!r}")
    entries = [
        line for line in listing.stdout.splitlines() if line.strip() and not line.startswith(";")
    ]
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {
        "size_bytes": size,
        "sha256": digest.hexdigest(),
        "toc_entries": len(entries),
        "table_data": sum(" TABLE DATA " in line for line in entries),
    }


class RetirementCopyProvider(pulumi.dynamic.ResourceProvider):
    """Takes the copy on create; never changes it; deleting it leaves the dump in place."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        target = CopyTarget(
            app=str(props["app"]),
            database=str(props["database"]),
            host=str(props["host"]),
            port=int(props["port"]),
            user=str(props["user"]),
            sslmode=str(props["sslmode"]),
            directory=str(props["directory"]),
        )
        record = take_copy(target, str(props["password"]))
        outs = {k: v for k, v in props.items() if k != "password"}
        return pulumi.dynamic.CreateResult(id_=record["sha256"], outs={**outs, **record})

    def diff(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(changes=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The dump stays: it is the only copy of a dropped database."""


class RetirementCopy(pulumi.dynamic.Resource, module="retirement", name="RetirementCopy"):
    """A verified `pg_dump` of a retiring app's database (see the module docstring)."""

    file: pulumi.Output[str]
    size_bytes: pulumi.Output[int]
    sha256: pulumi.Output[str]
    toc_entries: pulumi.Output[int]
    table_data: pulumi.Output[int]
    taken_at: pulumi.Output[str]
    dump_ms: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        target: CopyTarget,
        password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "app": target.app,
            "database": target.database,
            "host": target.host,
            "port": target.port,
            "user": target.user,
            "sslmode": target.sslmode,
            "directory": target.directory,
            "password": pulumi.Output.secret(password),
            **{key: None for key in RECORD_KEYS},
        }
        super().__init__(RetirementCopyProvider(), name, props, opts)


def record_of(copy: RetirementCopy, target: CopyTarget) -> pulumi.Output[dict[str, Any]]:
    """The copy's entry in `retirementCopies`."""
    return pulumi.Output.all(
        copy.file,
        copy.size_bytes,
        copy.sha256,
        copy.toc_entries,
        copy.table_data,
        copy.taken_at,
        copy.dump_ms,
    ).apply(
        lambda v: {
            "database": target.database,
            "file": v[0],
            "bytes": v[1],
            "sha256": v[2],
            "tocEntries": v[3],
            "tableData": v[4],
            "takenAt": v[5],
            "dumpMs": v[6],
        }
    )

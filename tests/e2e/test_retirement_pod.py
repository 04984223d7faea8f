"""Pod mode of the copy before a drop: a short-lived pod in `data` dumps onto a claim.

The local cluster's claim `data/postgres-apps-copies` is a hostPath volume
(`localenv/node/postgres.sh`), so the test reads the file the pod wrote and checks it against the
`retirementCopies` record. A claim that does not exist fails the copy, and nothing is dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from postgres_apps.retirement import OUTPUT_NAME as COPIES
from tests.e2e.harness import (
    REPO,
    ProjectStack,
    base_config,
    drop_leftovers,
    kubectl,
    new_stack,
    query,
    remove_namespace,
    secret_data,
)
from tests.e2e.reliability_support import connect_as, database_exists, role_exists

NAMESPACE = "e2e-retire"
APP = {"name": "e2e-retire-pod", "deletion": "drop"}
CLAIM = "postgres-apps-copies"
CLAIM_DIR = REPO / ".state/node/pv/postgres-apps-copies"
ROWS = 10_000


def config(apps: list[dict[str, Any]], claim: str = CLAIM) -> dict[str, Any]:
    cfg = base_config(apps, mode="pod", timeoutSeconds=20)
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    cfg["postgres-apps:retirement"] = {"persistentVolumeClaim": claim}
    return cfg


def copy_pods() -> list[str]:
    selector = "app.kubernetes.io/component=retirement-copy"
    return kubectl("get", "pods", "-n", "data", "-l", selector, "-o", "name").stdout.split()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    remove_namespace(NAMESPACE)
    drop_leftovers([APP["name"]])
    s = new_stack(tmp_path_factory.mktemp("retire-pod"), "e2e-retire-pod")
    s.write_config(config([APP]))
    s.up()
    data = secret_data(NAMESPACE, f"{APP['name']}-db-credentials")
    with connect_as(data["user"], data["password"], data["dbname"]) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute(
            "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, %s) g", (ROWS,)
        )
    try:
        yield s
    finally:
        s.write_config(config([]))
        s.stack.destroy(on_output=print, color="never")
        s.stack.workspace.remove_stack(s.name)
        drop_leftovers([APP["name"]])
        remove_namespace(NAMESPACE)


def test_a_claim_that_does_not_exist_fails_the_copy_and_drops_nothing(
    stack: ProjectStack,
) -> None:
    stack.write_config(config([], claim="no-such-claim"))
    try:
        with pytest.raises(auto.CommandError) as err:
            stack.up()
    finally:
        stack.write_config(config([APP]))
    text = str(err.value)
    assert 'retirement copy of app "e2e-retire-pod" (database "e2e_retire_pod") failed' in text
    assert "the claim data/no-such-claim must exist and be bound" in text, text[-3000:]
    assert database_exists("e2e_retire_pod") and role_exists("e2e_retire_pod")
    assert query("SELECT count(*) FROM notes", dbname="e2e_retire_pod") == [(ROWS,)]
    assert copy_pods() == [], "the copy pod is deleted on failure too"


def test_the_pod_copies_onto_the_claim_then_the_app_is_dropped(stack: ProjectStack) -> None:
    stack.write_config(config([]))
    stack.up()
    record = stack.outputs()[COPIES]["e2e-retire-pod"]
    prefix = f"pvc://data/{CLAIM}/"
    assert record["file"].startswith(prefix), record
    dump = CLAIM_DIR / record["file"].removeprefix(prefix)
    try:
        assert record["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
        assert record["bytes"] == dump.stat().st_size
        assert record["tableData"] == 1, record
        assert Path(f"{dump}.list").read_text().count("TABLE DATA public notes") == 1
        print(f"pod-mode copy of {ROWS} rows: {record['bytes']} bytes in {record['dumpMs']} ms")
    finally:
        for leftover in CLAIM_DIR.glob(f"{dump.name}*"):
            leftover.unlink()
    assert not database_exists("e2e_retire_pod") and not role_exists("e2e_retire_pod")
    assert copy_pods() == []

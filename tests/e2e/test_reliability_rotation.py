"""Password rotation: `passwordVersion` bumped on one app → new password on the role and in the
Secret in the same `pulumi up`, the gate re-runs with the new one, the old one is rejected, and the
other apps are not touched.

The stack uses `rerun: on-change`, so a gate run on the rotated app proves the rotation itself
re-triggers verification (the check's credentials hash changed), not an unconditional re-run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e.harness import ProjectStack, kubectl, new_stack, secret_data
from tests.e2e.reliability_support import (
    connect_as,
    delete_namespaces,
    login_error,
    purge_leftovers,
    rel_config,
)

NAMESPACE = "rel-rotate"
APPS: list[dict[str, Any]] = [
    {"name": "rel-ro-a", "profile": "n8n", "deletion": "drop"},
    {"name": "rel-ro-b", "deletion": "drop"},
]


def config(version: int = 0) -> dict[str, Any]:
    apps = [dict(APPS[0], passwordVersion=version), dict(APPS[1])]
    return rel_config(apps, NAMESPACE, rerun="on-change")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    purge_leftovers("rel_ro_", NAMESPACE)
    s = new_stack(tmp_path_factory.mktemp("rotate"), "rel-rotate")
    s.write_config(config())
    s.up()
    yield s
    try:
        s.stack.destroy(on_output=print, color="never")
        s.stack.workspace.remove_stack(s.name)
    finally:
        delete_namespaces(NAMESPACE)


def secret_meta(app: str) -> dict[str, str]:
    out = kubectl("get", "secret", "-n", NAMESPACE, f"{app}-db-credentials", "-o", "json")
    meta = json.loads(out.stdout)["metadata"]
    return {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}


def collect_ops(ops: dict[str, set[str]]) -> auto.OnEvent:
    """An event handler that records URN → operations (a replacement has several steps)."""

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value not in ("same", "read"):
            ops.setdefault(pre.metadata.urn, set()).add(pre.metadata.op.value)

    return on_event


def preview_ops(stack: ProjectStack) -> dict[str, set[str]]:
    """URN → operations of a preview."""
    ops: dict[str, set[str]] = {}
    stack.stack.preview(on_event=collect_ops(ops), color="never")
    return ops


def by_name(ops: dict[str, set[str]]) -> dict[str, set[str]]:
    """Resource name → operations, providers left out (their URNs hold no app name)."""
    return {
        urn.rsplit("::", 1)[1]: op for urn, op in ops.items() if "::pulumi:providers:" not in urn
    }


def test_preview_of_a_rotation_lists_only_that_apps_changes(stack: ProjectStack) -> None:
    stack.write_config(config(version=1))
    try:
        ops = preview_ops(stack)
    finally:
        stack.write_config(config(version=0))
    kinds = by_name(ops)
    assert all(name.startswith("rel-ro-a-") for name in kinds), kinds  # nothing of rel-ro-b
    assert "replace" in kinds.get("rel-ro-a-password", set()), kinds
    assert kinds.get("rel-ro-a-role") == {"update"}, kinds
    assert kinds.get("rel-ro-a-secret") == {"update"}, kinds
    assert kinds.get("rel-ro-a-check") == {"update"}, kinds
    assert "rel-ro-a-database" not in kinds, kinds  # the data is not touched


def test_bumping_password_version_rotates_one_app_in_one_up(stack: ProjectStack) -> None:
    old_a = secret_data(NAMESPACE, "rel-ro-a-db-credentials")
    old_b = secret_data(NAMESPACE, "rel-ro-b-db-credentials")
    meta_a, meta_b = secret_meta("rel-ro-a"), secret_meta("rel-ro-b")
    checked = {k: v["verification"]["checkedAt"] for k, v in stack.outputs()["apps"].items()}
    # an app connection opened with the old password, kept across the rotation
    live = connect_as(old_a["user"], old_a["password"], old_a["dbname"])
    try:
        stack.write_config(config(version=1))
        ops: dict[str, set[str]] = {}
        result = stack.up(on_event=collect_ops(ops))  # one `up`
        changes = {
            str(getattr(op, "value", op)): n
            for op, n in (result.summary.resource_changes or {}).items()
        }
        print("rotation up:", changes, by_name(ops))
        # The engine's summary: the generated password replaced, role, Secret and check updated,
        # nothing else ("same" is every other resource; its number follows the program's size).
        assert changes.get("replace") == 1, changes
        assert changes.get("update") == 3, changes
        # `read`: the StackReference to this stack and the admin Secret, read on every run
        assert set(changes) <= {"same", "read", "replace", "update"}, changes
        # …and which ones, from the step events: the check's update is the gate re-running.
        applied = by_name(ops)
        assert "replace" in applied.pop("rel-ro-a-password", set()), by_name(ops)
        assert applied == {
            "rel-ro-a-role": {"update"},
            "rel-ro-a-secret": {"update"},
            "rel-ro-a-check": {"update"},
        }, by_name(ops)

        new_a = secret_data(NAMESPACE, "rel-ro-a-db-credentials")
        assert new_a["password"] != old_a["password"]
        assert len(new_a["password"]) >= 32
        assert new_a["DB_POSTGRESDB_PASSWORD"] == new_a["password"]
        assert new_a["password"] in new_a["uri"] and old_a["password"] not in new_a["uri"]
        assert login_error(new_a["user"], new_a["password"], new_a["dbname"]) is None
        old_login = login_error(old_a["user"], old_a["password"], old_a["dbname"])
        # PostgreSQL's own refusal (auth.c), for exactly this role
        refused = f'password authentication failed for user "{old_a["user"]}"'
        assert old_login is not None and refused in old_login, old_login
        # the Secret was updated in place (same object: no window without it; mounted volumes
        # see the new value)
        assert secret_meta("rel-ro-a")["uid"] == meta_a["uid"]
        assert secret_meta("rel-ro-a")["resourceVersion"] != meta_a["resourceVersion"]
        # the gate ran again on the rotated app, with the new password, and passed: `checkedAt`
        # has microseconds, so a re-run is strictly newer and a kept result is equal
        apps = stack.outputs()["apps"]
        assert apps["rel-ro-a"]["verification"]["checkedAt"] > checked["rel-ro-a"]
        assert "login" in apps["rel-ro-a"]["verification"]["checksPassed"]
        # the other app: same password, same Secret version, its check did not re-run
        assert secret_data(NAMESPACE, "rel-ro-b-db-credentials") == old_b
        assert secret_meta("rel-ro-b") == meta_b
        assert apps["rel-ro-b"]["verification"]["checkedAt"] == checked["rel-ro-b"]
        # a session opened before the rotation keeps working (PostgreSQL checks at login only)
        assert live.execute("SELECT 1").fetchone() == (1,)
    finally:
        live.close()


def test_rotation_updates_the_secret_in_place(stack: ProjectStack) -> None:
    before = secret_meta("rel-ro-a")
    stack.write_config(config(version=2))  # the test above left version 1
    stack.up()
    assert secret_meta("rel-ro-a")["uid"] == before["uid"]


def test_rotation_is_idempotent(stack: ProjectStack) -> None:
    before = secret_data(NAMESPACE, "rel-ro-a-db-credentials")
    result = stack.up()
    changed = {
        k: v
        for k, v in (result.summary.resource_changes or {}).items()
        if k not in ("same", "read")
    }
    assert changed == {}, changed
    assert secret_data(NAMESPACE, "rel-ro-a-db-credentials") == before

"""Upgrade: a stack deployed by the last release (0.1.x, the commit before the package layout)
is taken over by this checkout with no replacement and no deletion.

The old program is the commit itself (`git archive`), deployed on the local cluster in pod mode;
this checkout then runs on the same stack and backend. What must hold: the preview has only
`same` and `read` steps besides creating the new `PostgresApps` component, the namespace's
`NamespaceProbe` (0.3: one probe pod per namespace) and the `AppsReady` barrier the gate waits
on (0.3), and the checks' update that judges the probe's result; the `up` replaces and deletes
nothing; roles and databases keep their OIDs, Secrets their UIDs; a refresh through the state the
old program wrote (its pickled provider path) works.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from tests.e2e.harness import (
    REPO,
    base_config,
    drop_leftovers,
    engine_env,
    kubectl,
    query,
    remove_namespace,
)

UPGRADE_FROM = "5b8987bbf81ecf31d34be5c2436def978af04f05"
"""The last commit with the 0.1.x layout (`components/` imported as a package from the root)."""
STACK = "e2e-upgrade"
NAMESPACE = "e2e-upgrade"
APPS: list[dict[str, Any]] = [
    {"name": "e2e-upg-one", "deletion": "drop"},
    {"name": "e2e-upg-two", "profile": "n8n", "extensions": ["pgcrypto"], "deletion": "drop"},
]
COMPONENT = "postgres-apps:apps:PostgresApps"
PROBE = "pulumi-python:dynamic/verification:NamespaceProbe"
READY = "pulumi-python:dynamic/verification:AppsReady"
CHECK = "pulumi-python:dynamic/verification:ConnectivityCheck"
EXPECTED_CHANGES = sorted(
    [
        ("create", COMPONENT, "postgres-apps"),
        ("create", PROBE, f"{NAMESPACE}-probe"),
        ("create", READY, "apps-ready"),
        *(("update", CHECK, f"{a['name']}-check") for a in APPS),
    ]
)
"""New in the state: the component (aliases move the rest), the namespace probe and the barrier
(`AppsReady`); each check is updated once, to judge the probe's result (its new input
`probe_run`). Nothing else."""
CHANGING_OPS = {"create", "update", "delete", "replace", "create-replacement", "delete-replaced"}


def config() -> dict[str, Any]:
    # `rerun: on-change`: with `always` every check re-runs (an update) by design; here the
    # checks must see no change in their inputs across the upgrade.
    cfg = base_config(APPS, mode="pod", rerun="on-change", timeoutSeconds=90)
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    return cfg


def project(source: Path, work: Path, config_file: Path | None) -> Path:
    """A project dir from a source tree: the program, its package, Pulumi.yaml on our venv."""
    work.mkdir(parents=True)
    shutil.copy2(source / "__main__.py", work / "__main__.py")
    shutil.copytree(
        source / "components", work / "components", ignore=shutil.ignore_patterns("__pycache__")
    )
    spec = yaml.safe_load((source / "Pulumi.yaml").read_text())
    spec["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if config_file is not None:  # the stack's config and encryption salt travel with it
        shutil.copy2(config_file, work / config_file.name)
    return work


def old_release(dest: Path) -> Path:
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "archive",
            UPGRADE_FROM,
            "__main__.py",
            "components",
            "Pulumi.yaml",
        ],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def stack_in(work: Path, env: dict[str, str], create: bool) -> auto.Stack:
    opts = auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=env)
    if create:
        return auto.create_stack(STACK, work_dir=str(work), opts=opts)
    return auto.select_stack(STACK, work_dir=str(work), opts=opts)


def identities() -> dict[str, Any]:
    names = [a["name"].replace("-", "_") for a in APPS]
    roles = dict(query("SELECT rolname, oid::int FROM pg_roles WHERE rolname = ANY(%s)", names))
    dbs = dict(query("SELECT datname, oid::int FROM pg_database WHERE datname = ANY(%s)", names))
    uids = {
        a["name"]: kubectl(
            "get",
            "secret",
            "-n",
            NAMESPACE,
            f"{a['name']}-db-credentials",
            "-o",
            "jsonpath={.metadata.uid}",
        ).stdout
        for a in APPS
    }
    return {"roles": roles, "databases": dbs, "secrets": uids}


class Steps:
    """Every step the engine announces, as (op, type, name)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata is not None:
            meta = pre.metadata
            self.seen.append((str(meta.op.value), meta.type, meta.urn.rsplit("::", 1)[-1]))

    def changing(self) -> list[tuple[str, str, str]]:
        return [s for s in self.seen if s[0] in CHANGING_OPS]


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("upgrade")
    env = engine_env(tmp / "state")  # one backend and passphrase for both releases
    remove_namespace(NAMESPACE)
    drop_leftovers([a["name"] for a in APPS])
    old_work = project(old_release(tmp / "old-src"), tmp / "old", None)
    old = stack_in(old_work, env, create=True)
    new: auto.Stack | None = None
    try:
        (old_work / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config()}))
        old.up(on_output=print, color="never")
        before = identities()
        new_work = project(REPO, tmp / "new", old_work / f"Pulumi.{STACK}.yaml")
        new = stack_in(new_work, env, create=False)
        preview = Steps()
        new.preview(on_output=print, color="never", diff=True, on_event=preview)
        # before the `up` re-pickles them: the checks' state still names the 0.1.x class path
        refresh = new.refresh(on_output=print, color="never")
        up = Steps()
        up_result = new.up(on_output=print, color="never", on_event=up)
        after = identities()
        yield {
            "preview": preview,
            "up": up,
            "up_result": up_result,
            "before": before,
            "after": after,
            "refresh": refresh,
        }
    finally:
        (new or old).destroy(on_output=print, color="never")
        remove_namespace(NAMESPACE)


def test_preview_of_the_upgrade_changes_nothing_but_adds_the_component(
    upgraded: dict[str, Any],
) -> None:
    steps: Steps = upgraded["preview"]
    assert sorted(steps.changing()) == EXPECTED_CHANGES, steps.changing()
    assert {op for op, _, _ in steps.seen} <= {"same", "read", "create", "update"}
    assert len(steps.seen) > 20  # every resource of two apps was compared, not skipped


def test_up_replaces_and_deletes_nothing(upgraded: dict[str, Any]) -> None:
    steps: Steps = upgraded["up"]
    assert sorted(steps.changing()) == EXPECTED_CHANGES, steps.changing()
    result: auto.UpResult = upgraded["up_result"]
    assert set(result.outputs["apps"].value) == {a["name"] for a in APPS}


def test_roles_databases_and_secrets_are_the_same_objects(upgraded: dict[str, Any]) -> None:
    before, after = upgraded["before"], upgraded["after"]
    assert len(before["roles"]) == len(before["databases"]) == len(APPS)
    assert all(before["secrets"].values())
    assert after == before


def test_refresh_reads_the_state_the_old_release_wrote(upgraded: dict[str, Any]) -> None:
    changes = upgraded["refresh"].summary.resource_changes or {}
    assert set(changes) <= {"same", "update"}, changes
    assert changes.get("same", 0) > 0

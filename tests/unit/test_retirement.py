"""The copy before a drop: the pod it runs as, the runner's lifecycle, the script's output."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from postgres_apps.retirement import (
    SCRIPT,
    CopyFailedError,
    CopyPod,
    CopyTarget,
    build_copy_pod,
    parse_copy_output,
    take_copy_in_pod,
)
from tests.unit.conftest import ADMIN_PASSWORD, COPY_TYPE, THREE_APPS, ProgramMocks, run_program
from tests.unit.test_program import _previous

TARGET = CopyTarget(
    app="old-app",
    database="old_app",
    host="postgres-postgresql.data.svc.cluster.local",
    port=5432,
    user="postgres",
    sslmode="prefer",
    directory="/ignored",
)
POD = CopyPod(
    namespace="data",
    claim="copies",
    secret_name="postgres-postgresql",
    secret_key="postgres-password",
    image="docker.io/library/postgres:17-alpine",
    start_timeout_seconds=5,
)
NOW = datetime(2026, 12, 2, 21, 0, 0, tzinfo=UTC)
GOOD_OUTPUT = (
    """pg_dump: warning: something harmless
==list
;
; Archive created at 2026-12-02 21:00:00 UTC
;     dbname: old_app
;     TOC Entries: 9
215; 1259 16390 TABLE public notes old_app
3345; 0 16390 TABLE DATA public notes old_app
3201; 2606 16396 CONSTRAINT public notes notes_pkey old_app
==copy 4096 """
    + "ab" * 32
)


def test_the_copy_pod_is_restricted_and_never_holds_the_password() -> None:
    manifest = build_copy_pod(TARGET, POD, "retire-copy-old-app-210000", "old_app-x.dump")
    spec = manifest["spec"]
    assert manifest["metadata"]["namespace"] == "data"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["fsGroup"] == 70
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "postgres-postgresql", "key": "postgres-password"}
    }
    assert env["PGHOST"]["value"] == TARGET.host
    assert ADMIN_PASSWORD not in str(manifest)
    assert container["command"][-2:] == ["old_app", "/copies/old_app-x.dump"]
    assert "pg_dump --format=custom" in container["command"][2]
    assert spec["volumes"] == [{"name": "copies", "persistentVolumeClaim": {"claimName": "copies"}}]


def test_the_script_dumps_lists_checks_the_name_and_only_then_renames() -> None:
    script = "\n".join(line for line in SCRIPT.read_text().splitlines() if not line.startswith("#"))
    order = [script.index(step) for step in ("pg_dump ", "pg_restore --list", "[Dd]bname:", "mv ")]
    assert order == sorted(order)


def test_parse_reads_the_record_and_checks_the_database_again() -> None:
    record = parse_copy_output(TARGET, GOOD_OUTPUT)
    assert record == {"size_bytes": 4096, "sha256": "ab" * 32, "toc_entries": 3, "table_data": 1}
    with pytest.raises(CopyFailedError, match="does not name 'old_app'"):
        parse_copy_output(TARGET, GOOD_OUTPUT.replace("dbname: old_app", "dbname: other"))
    with pytest.raises(CopyFailedError, match="reported no result"):
        parse_copy_output(TARGET, "==list\n;     dbname: old_app\n")


class FakeApi:
    """The four CoreV1Api calls the runner makes, recorded."""

    def __init__(self, phases: list[str], log: str = GOOD_OUTPUT, create_error: bool = False):
        self.phases, self.log, self.create_error = phases, log, create_error
        self.calls: list[str] = []

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **_: Any) -> None:
        self.calls.append(f"create {namespace}/{body['metadata']['name']}")
        if self.create_error:
            raise RuntimeError("forbidden")

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        phase = self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]
        return SimpleNamespace(status=SimpleNamespace(phase=phase, conditions=[]))

    def read_namespaced_pod_log(self, name: str, namespace: str, **_: Any) -> str:
        return self.log

    def delete_namespaced_pod(self, name: str, namespace: str, **_: Any) -> None:
        self.calls.append(f"delete {namespace}/{name}")


def test_pod_runner_returns_the_record_and_deletes_its_pod() -> None:
    api = FakeApi(["Pending", "Running", "Succeeded"])
    record = take_copy_in_pod(TARGET, POD, api, now=NOW, poll_interval_s=0)
    assert record["file"] == "pvc://data/copies/old_app-20261202T210000Z.dump"
    assert record["sha256"] == "ab" * 32
    assert api.calls == [
        "create data/retire-copy-old-app-210000",
        "delete data/retire-copy-old-app-210000",
    ]


def test_a_failed_pod_fails_the_copy_with_its_last_line_and_is_deleted() -> None:
    api = FakeApi(["Failed"], log='pg_dump: error: database "old_app" does not exist')
    with pytest.raises(CopyFailedError, match='database "old_app" does not exist'):
        take_copy_in_pod(TARGET, POD, api, now=NOW, poll_interval_s=0)
    assert api.calls[-1] == "delete data/retire-copy-old-app-210000"


def test_a_pod_that_never_starts_fails_after_the_start_timeout() -> None:
    api = FakeApi(["Pending"])
    with pytest.raises(CopyFailedError, match="claim data/copies must exist and be bound"):
        take_copy_in_pod(TARGET, replace(POD, start_timeout_seconds=0), api, now=NOW)
    assert api.calls[-1] == "delete data/retire-copy-old-app-210000"


def test_a_pod_that_cannot_be_created_fails_the_copy() -> None:
    with pytest.raises(CopyFailedError, match="cannot create pod data/retire-copy-old-app"):
        take_copy_in_pod(TARGET, POD, FakeApi(["Pending"], create_error=True), now=NOW)


def test_with_a_claim_the_program_sends_no_password_and_the_in_cluster_endpoint() -> None:
    previous = _previous(**{"app-test": "protect", "n8n": "protect", "gone": "drop"})
    config = {**THREE_APPS, "retirement": {"persistentVolumeClaim": "copies"}}
    run = run_program(config, ProgramMocks(previous_managed_apps=previous))
    (copy,) = [r for r in run.monitor.registrations if r.type == COPY_TYPE]
    props = copy.plain
    assert props.get("password") is None
    assert props["host"] == "postgres-postgresql.data.svc.cluster.local"
    assert props["pod"]["claim"] == "copies" and props["pod"]["namespace"] == "data"
    assert props["pod"]["secret_name"] == "postgres-postgresql"

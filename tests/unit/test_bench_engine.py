"""The benchmark's event-log reading, gate report and floor SQL (no engine, no server)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from bench import floor
from bench.engine import EngineRun, Step, _EventTail, gate_report, run_pulumi

CHECK = "pulumi-python:dynamic/verification:ConnectivityCheck"
ROLE = "postgresql:index/role:Role"


def _event(kind: str, urn: str, typ: str, op: str = "create") -> str:
    return json.dumps(
        {"sequence": 1, "timestamp": 0, kind: {"metadata": {"urn": urn, "type": typ, "op": op}}}
    )


def test_event_tail_pairs_pre_and_outputs_and_reads_the_summary(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    lines = [
        json.dumps({"sequence": 0, "timestamp": 0, "cancelEvent": {}}),
        _event("resourcePreEvent", "urn:a-role", ROLE),
        _event("resourcePreEvent", "urn:b-role", ROLE),
        _event("resOutputsEvent", "urn:a-role", ROLE),
        _event("resourcePreEvent", "urn:a-check", CHECK),
        json.dumps(
            {"resOpFailedEvent": {"metadata": {"urn": "urn:b-role", "type": ROLE, "op": "create"}}}
        ),
        "not json",
        json.dumps({"summaryEvent": {"resourceChanges": {"create": 2, "same": 3}}}),
    ]
    log.write_text("\n".join(lines) + "\n")
    tail = _EventTail(log, t0=0.0)
    tail.stop.set()  # the process has exited: read everything, then return
    tail.run()
    assert set(tail.steps) == {"urn:a-role", "urn:b-role", "urn:a-check"}
    assert tail.steps["urn:a-role"].duration is not None
    assert tail.steps["urn:b-role"].failed
    assert tail.steps["urn:a-check"].end is None
    assert tail.changes == {"create": 2, "same": 3}


def _run(steps: list[Step], returncode: int = 0) -> EngineRun:
    return EngineRun(
        command="up",
        wall_s=30.0,
        returncode=returncode,
        changes={"create": len(steps)},
        steps={s.urn: s for s in steps},
        output_tail="error: check failed",
    )


def test_gate_report_spans_the_checks_and_summarizes_latency() -> None:
    steps = [
        Step("urn:x-role", ROLE, "create", 0.0, 1.0),
        Step("urn:a-check", CHECK, "create", 2.0, 4.0),
        Step("urn:b-check", CHECK, "create", 2.5, 7.0),
        Step("urn:c-check", CHECK, "same", 0.1, 0.2),  # not run: not part of the gate
    ]
    outputs: dict[str, Any] = {
        "apps": {
            "a": {"verification": {"connectMs": 3.0, "roundtripP50Ms": 0.3, "roundtripP95Ms": 0.9}},
            "b": {"verification": {"connectMs": 5.0, "roundtripP50Ms": 0.5, "roundtripP95Ms": 2.0}},
            "c": {"database": "c"},  # gate off for it: no verification entry
        }
    }
    report = gate_report(_run(steps), outputs, "direct")
    assert report["checks_run"] == 2
    assert report["gate_span_s"] == 5.0
    assert report["check_duration_s"]["max"] == 4.5
    assert report["apps"] == 3
    assert report["connect_ms"]["p50"] == 4.0
    assert report["roundtrip_p95_ms"]["max"] == 2.0
    assert "error" not in report


def test_gate_report_of_a_failed_up_says_so() -> None:
    report = gate_report(_run([], returncode=255), {}, "pod")
    assert report["error"].startswith("`pulumi up` failed (exit 255)")
    assert "gate_span_s" not in report


def test_by_type_sums_and_spans_only_real_steps() -> None:
    run = _run(
        [
            Step("urn:a-role", ROLE, "create", 0.0, 1.0),
            Step("urn:b-role", ROLE, "create", 0.5, 3.0),
            Step("urn:c-role", ROLE, "same", 0.0, 0.1),
        ]
    )
    assert run.by_type() == {
        ROLE: {
            "steps": 2,
            "sum_s": 3.5,
            "span_s": 3.0,
            "step_s": {"count": 2, "min": 1.0, "p50": 1.75, "p95": 2.425, "max": 2.5, "mean": 1.75},
        }
    }
    run.changes = {"create": 2, "same": 1}
    assert run.to_json()["touched"] == 2


def test_floor_sql_matches_the_components_semantics() -> None:
    stmts = [s.as_string(None) for s in floor.create_statements("bench-floor-001", "pw", 20)]
    assert stmts == [
        "CREATE ROLE \"bench_floor_001\" LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE "
        "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 20",
        'CREATE DATABASE "bench_floor_001" OWNER "bench_floor_001"',
        'REVOKE CONNECT, TEMPORARY ON DATABASE "bench_floor_001" FROM PUBLIC',
        'GRANT CONNECT ON DATABASE "bench_floor_001" TO "bench_floor_001"',
    ]
    drops = [s.as_string(None) for s in floor.drop_statements("bench-floor-001")]
    assert drops == [
        'DROP DATABASE IF EXISTS "bench_floor_001" WITH (FORCE)',
        'DROP ROLE IF EXISTS "bench_floor_001"',
    ]
    assert isinstance(floor.create_statements("a", "b")[0], sql.Composed)


def test_app_names_are_valid_and_distinct() -> None:
    names = floor.app_names("n50", 50)
    assert len(set(names)) == 50
    assert names[0] == "bench-n50-001"
    assert all(floor.ident(n).startswith("bench_") for n in names)
    assert all(re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 48 for n in names)


FAKE_PULUMI = r"""#!/usr/bin/env python3
# A stand-in `pulumi`: writes engine events to --event-log with pauses, like the real CLI.
import json, sys, time
args = sys.argv[1:]
log = args[args.index("--event-log") + 1] if "--event-log" in args else None
if "hang" in args:
    time.sleep(60)
def emit(f, kind, urn, typ, op="create"):
    f.write(json.dumps({kind: {"metadata": {"urn": urn, "type": typ, "op": op}}}) + "\n")
    f.flush()
with open(log, "w") as f:
    emit(f, "resourcePreEvent", "urn:a-check", "x:dynamic/verification:ConnectivityCheck")
    time.sleep(0.3)
    emit(f, "resOutputsEvent", "urn:a-check", "x:dynamic/verification:ConnectivityCheck")
    f.write(json.dumps({"summaryEvent": {"resourceChanges": {"create": 1}}}) + "\n")
print("done")
sys.exit(3 if "fail" in args else 0)
"""


@pytest.fixture
def fake_pulumi(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "pulumi"
    exe.write_text(FAKE_PULUMI)
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}


def test_run_pulumi_times_the_process_and_its_steps(
    tmp_path: Path, fake_pulumi: dict[str, str]
) -> None:
    run = run_pulumi(["up", "--yes"], cwd=tmp_path, env=fake_pulumi, timeout=30)
    assert run.ok
    assert run.changes == {"create": 1}
    step = run.steps["urn:a-check"]
    assert step.duration is not None
    assert 0.25 <= step.duration <= run.wall_s
    assert "done" in run.output_tail
    assert run.memory["samples"] >= 1


def test_run_pulumi_reports_failure_and_timeout(
    tmp_path: Path, fake_pulumi: dict[str, str]
) -> None:
    failed = run_pulumi(["up", "fail"], cwd=tmp_path, env=fake_pulumi, timeout=30)
    assert not failed.ok
    assert failed.error().startswith("`pulumi up` failed (exit 3)")
    hung = run_pulumi(["up", "hang"], cwd=tmp_path, env=fake_pulumi, timeout=1, events=False)
    assert hung.timed_out
    assert hung.wall_s < 40
    assert "timed out" in hung.error()

"""Where a no-op `up` and the removal of one app go at N apps (issue 17's profile question).

Deploys N apps (gate off, as the benchmark's steady state) on a temporary stack, then runs a
no-op `up` and an `up` that removes one app, each with the CLI's own `--profiling` (a Go CPU
profile of the engine process, read with `go tool pprof`) and the CPU seconds of every process
it starts (`bench.procmem`: engine, language host, program, each provider). The profile is
summed into the engine's parts by the functions on each sample's stack (`PARTS`): the
checkpoint save after each step and what it consists of, the step generator's diffs, gRPC.

Not part of `make bench` (a 200-app deploy and destroy takes about ten minutes here); run it as
    source localenv/env.sh
    .venv/bin/python -m bench.profile --apps 200 --max-connections 250 --out FILE
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Final

from bench.engine import BenchStack, EngineRun, run_pulumi
from bench.main import (
    OP_TIMEOUT,
    app_entries,
    git_commit,
    log,
    machine_facts,
    pick_server,
    raised_max_connections,
    stack_config,
    temp_stack,
)

PARTS: Final[tuple[tuple[str, str], ...]] = (
    (
        "checkpoint save (SnapshotManager.saveSnapshot)",
        r"backend\.\(\*SnapshotManager\)\.saveSnapshot$",
    ),
    (
        "  URN normalisation (Snapshot.NormalizeURNReferences)",
        r"deploy\.\(\*Snapshot\)\.NormalizeURNReferences$",
    ),
    # SnapshotManager.Deployment calls SerializeDeploymentWithMetadata directly (v3.274.1,
    # pkg/backend/snapshot.go); SerializeDeployment is a wrapper of it
    (
        "  serialize the deployment (stack.SerializeDeploymentWithMetadata)",
        r"stack\.SerializeDeploymentWithMetadata$",
    ),
    ("  integrity check (snapshot.VerifyIntegrity)", r"snapshot\.VerifyIntegrity$"),
    ("  DIY write (diyBackend.saveCheckpoint)", r"diy\.\(\*diyBackend\)\.saveCheckpoint$"),
    ("    JSON marshal", r"encoding/json\.Marshal|encoding\.\(\*jsonMarshaler\)\.Marshal"),
    ("    backup copy (backupTarget)", r"diy\.backupTarget$"),
    (
        "step generation (stepGenerator.GenerateSteps)",
        r"deploy\.\(\*stepGenerator\)\.GenerateSteps$",
    ),
    ("gRPC (google.golang.org/grpc)", r"^google\.golang\.org/grpc\."),
    ("garbage collector (runtime.gcBgMarkWorker)", r"^runtime\.gcBgMarkWorker$"),
)
"""(label, regexp on a function name): a part's CPU is that of the samples with such a function on
their stack (pprof's cumulative figure), so nested parts are shares of their parent."""

_UNIT: Final = r"(?:ms|s|mins|hrs)?"
_TOP_LINE: Final = re.compile(
    rf"^\s*(?P<flat>[\d.]+)(?P<fu>{_UNIT})\s+[\d.]+%\s+[\d.]+%\s+"
    rf"(?P<cum>[\d.]+)(?P<cu>{_UNIT})\s+[\d.]+%\s+(?P<name>\S.*)$"
)
_TOTAL: Final = re.compile(rf"Total samples = (?P<v>[\d.]+)(?P<u>{_UNIT})")
_SECONDS_PER: Final = {"ms": 0.001, "s": 1.0, "mins": 60.0, "hrs": 3600.0, "": 1.0}


def _seconds(value: str, unit: str | None) -> float:
    return float(value) * _SECONDS_PER[unit or ""]


def parse_top(text: str) -> tuple[float, list[dict[str, Any]]]:
    """`go tool pprof -top -cum` text → (sampled CPU seconds, rows of name/flat_s/cum_s)."""
    total = _TOTAL.search(text)
    rows = [
        {
            "name": m["name"].strip(),
            "flat_s": round(_seconds(m["flat"], m["fu"]), 3),
            "cum_s": round(_seconds(m["cum"], m["cu"]), 3),
        }
        for m in map(_TOP_LINE.match, text.splitlines())
        if m
    ]
    return (_seconds(total["v"], total["u"]) if total else 0.0), rows


def parts_of(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each part's cumulative CPU: the largest `cum` among the functions that match it."""
    out: dict[str, float] = {}
    for label, pattern in PARTS:
        matched = [r["cum_s"] for r in rows if re.search(pattern, r["name"])]
        out[label] = max(matched, default=0.0)
    return out


def read_profile(path: Path) -> dict[str, Any]:
    text = subprocess.run(
        ["go", "tool", "pprof", "-top", "-cum", "-nodecount=400", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    total, rows = parse_top(text)
    return {"sampled_cpu_s": round(total, 3), "parts_s": parts_of(rows), "top_cum": rows[:25]}


def profiled_up(stack: BenchStack, prefix: Path) -> tuple[EngineRun, dict[str, Any]]:
    """One `up` with `--profiling`: its run, and the engine's CPU profile read back."""
    run = run_pulumi(
        [
            "up",
            "--yes",
            "--skip-preview",
            "--stack",
            stack.project.name,
            "--profiling",
            str(prefix),
        ],
        cwd=stack.cwd,
        env=stack.env,
        timeout=OP_TIMEOUT,
    )
    cpu = sorted(prefix.parent.glob(f"{prefix.name}.*.cpu"))
    return run, (read_profile(cpu[-1]) if cpu else {"error": "no CPU profile written"})


def summary(run: EngineRun, profile: dict[str, Any]) -> dict[str, Any]:
    cpu = {k: v.get("cpu_s") for k, v in run.memory["by_kind"].items()}
    return {
        "wall_s": round(run.wall_s, 3),
        "ok": run.ok,
        "changes": run.changes,
        "cpu_s_by_process": cpu,
        "engine_profile": profile,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--max-connections",
        type=int,
        default=0,
        help="raise the local server's max_connections for the run, as bench/run.sh does "
        "(200 apps at connectionLimit 1 need more than the default 100)",
    )
    args = parser.parse_args(argv)
    sha, dirty = git_commit()
    notes: list[str] = []
    result: dict[str, Any] = {
        "commit": sha + ("-dirty" if dirty else ""),
        "machine": machine_facts(),
        "apps": args.apps,
        "notes": notes,
    }
    apps = app_entries(f"p{args.apps}", args.apps)
    server = pick_server()
    with (
        raised_max_connections(server, args.max_connections or None, notes),
        temp_stack(f"profile-{args.apps}") as stack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        stack.write_config(stack_config(apps, gate=False))
        log(f"up from empty, {args.apps} apps (gate off)")
        first = stack.up(timeout=OP_TIMEOUT)
        result["from_empty_s"] = round(first.wall_s, 3)
        if not first.ok:
            raise SystemExit(f"up from empty failed: {first.error()}")
        for label, config in (
            ("noop_up", apps),
            ("remove_one", apps[:-1]),
        ):
            stack.write_config(stack_config(config, gate=False))
            run, profile = profiled_up(stack, Path(tmp) / label)
            result[label] = summary(run, profile)
            log(f"{label}: {run.wall_s:.2f} s, {json.dumps(result[label]['cpu_s_by_process'])}")
            log(f"  engine parts: {json.dumps(profile.get('parts_s'))}")
        stack.destroy(timeout=OP_TIMEOUT)
    server.close()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

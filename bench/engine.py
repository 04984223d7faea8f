"""Timed runs of the real Pulumi CLI on temporary stacks (a copy of the project, private backend).

The stacks come from the e2e harness (`tests.e2e.harness.new_stack`: a temporary copy of the
program, a private file backend and passphrase, the toolchain of localenv/env.sh). Each timed
operation is one `pulumi` process started here, so its wall time is exactly what an operator or a
CI job waits for that command (the Automation API adds `stack output`/`history` calls after `up`,
which would blur the number). While it runs:
  - its `--event-log` is tailed, every event stamped on arrival (≤ 20 ms late), giving each
    resource step's start and end, the summary of changes, and the span of the gate;
  - a MemorySampler records the peak memory of the CLI and every process it starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from bench.procmem import MemorySampler
from bench.stats import summarize
from tests.e2e.harness import REPO, ProjectStack, engine_env

CHECK_TYPE_MARK = "ConnectivityCheck"
"""The gate's per-app dynamic resources: their type token (or URN) names the class."""
PROBE_TYPE_MARK = "NamespaceProbe"
"""Pod mode: the namespace's probe run, before the checks (part of the gate's span)."""


@dataclass
class Step:
    urn: str
    type: str
    op: str
    start: float | None = None
    end: float | None = None
    failed: bool = False

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@dataclass
class EngineRun:
    """One `pulumi` command: how long, what it changed, each step's timing, peak memory."""

    command: str
    wall_s: float
    returncode: int
    changes: dict[str, int] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    output_tail: str = ""
    """The command's whole output (only error lines of it reach the results)."""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def error(self) -> str:
        """What failed: the first diagnostic lines that say `error`, else the output's tail."""
        why = "timed out" if self.timed_out else f"exit {self.returncode}"
        errors = [
            " ".join(line.split())
            for line in self.output_tail.splitlines()
            if "error" in line.lower()
            and line.strip() not in ("error:", "errors:")
            and "errored" not in line
        ]
        # the exception itself (e.g. `VerificationError: app … check "latency" failed: …`) first
        errors.sort(key=lambda line: "Error: " not in line)
        detail = " / ".join(dict.fromkeys(errors))[:1200] if errors else self.output_tail[-300:]
        return f"`pulumi {self.command}` failed ({why}): {' '.join(detail.split())}"

    def steps_of(self, mark: str) -> list[Step]:
        return [s for s in self.steps.values() if mark in s.type or mark in s.urn]

    def by_type(self) -> dict[str, dict[str, Any]]:
        """Per resource type: steps, summed step time, span (first start → last end), slowest."""
        groups: dict[str, list[Step]] = {}
        for s in self.steps.values():
            if s.duration is not None and s.op != "same":
                groups.setdefault(s.type, []).append(s)
        out: dict[str, dict[str, Any]] = {}
        for typ, steps in groups.items():
            durations = [s.duration for s in steps if s.duration is not None]
            starts = [s.start for s in steps if s.start is not None]
            ends = [s.end for s in steps if s.end is not None]
            out[typ] = {
                "steps": len(steps),
                "sum_s": round(sum(durations), 3),
                "span_s": round(max(ends) - min(starts), 3),
                "step_s": summarize(durations).as_dict(),
            }
        return dict(sorted(out.items(), key=lambda kv: -float(kv[1]["sum_s"])))

    def to_json(self, *, with_types: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "wall_s": round(self.wall_s, 3),
            "changes": self.changes,
            "touched": sum(n for op, n in self.changes.items() if op != "same"),
            "memory": self.memory,
        }
        if with_types:
            out["by_type"] = self.by_type()
        if not self.ok:
            out["error"] = self.error()
        return out


class _EventTail(threading.Thread):
    """Follows an engine event log (one JSON object per line), stamping each event on arrival."""

    def __init__(self, path: Path, t0: float) -> None:
        super().__init__(name="event-tail", daemon=True)
        self.path = path
        self.t0 = t0
        self.stop = threading.Event()
        self.steps: dict[str, Step] = {}
        self.changes: dict[str, int] = {}

    def run(self) -> None:
        while not self.path.exists() and not self.stop.is_set():
            time.sleep(0.01)
        if not self.path.exists():
            return
        with self.path.open() as f:
            buf = ""
            while True:
                chunk = f.readline()
                if chunk:
                    buf += chunk
                    if buf.endswith("\n"):
                        self._handle(buf, time.perf_counter() - self.t0)
                        buf = ""
                    continue
                if self.stop.is_set():
                    # drain what is left after the process exited
                    rest = f.read()
                    for line in (buf + rest).splitlines():
                        self._handle(line, time.perf_counter() - self.t0)
                    return
                time.sleep(0.02)

    def _handle(self, line: str, at: float) -> None:
        line = line.strip()
        if not line:
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        for key, is_end in (("resourcePreEvent", False), ("resOutputsEvent", True)):
            if key in event:
                meta = event[key].get("metadata", {})
                urn = meta.get("urn", "")
                step = self.steps.setdefault(
                    urn, Step(urn=urn, type=meta.get("type", ""), op=meta.get("op", ""))
                )
                if is_end:
                    step.end = at
                else:
                    step.start = at
                    step.op = meta.get("op", step.op)
        if "resOpFailedEvent" in event:
            meta = event["resOpFailedEvent"].get("metadata", {})
            urn = meta.get("urn", "")
            step = self.steps.setdefault(
                urn, Step(urn=urn, type=meta.get("type", ""), op=meta.get("op", ""))
            )
            step.end = at
            step.failed = True
        if "summaryEvent" in event:
            self.changes = dict(event["summaryEvent"].get("resourceChanges") or {})


def run_pulumi(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    events: bool = True,
) -> EngineRun:
    """Run `pulumi <args>` once, timed, with its event log tailed and its memory sampled.

    On timeout the CLI gets SIGINT (it cancels cleanly), then SIGKILL 30 s later.
    """
    log_dir = cwd / ".bench-events"
    log_dir.mkdir(exist_ok=True)
    event_log = log_dir / f"{time.time_ns()}.jsonl"
    argv = ["pulumi", *args, "--non-interactive", "--color", "never"]
    env = dict(env)
    if events:
        argv += ["--event-log", str(event_log)]
        env["PULUMI_DEBUG_COMMANDS"] = "true"  # --event-log exists only then (as for Automation)
    out_path = log_dir / f"{event_log.stem}.out"
    t0 = time.perf_counter()
    tail = _EventTail(event_log, t0)
    timed_out = False
    with MemorySampler() as sampler, out_path.open("w") as out:
        if events:
            tail.start()
        t0 = time.perf_counter()
        tail.t0 = t0
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - t0
    if events:
        tail.stop.set()
        tail.join(timeout=10)
    text = out_path.read_text(errors="replace")
    return EngineRun(
        command=" ".join(args[:1]),
        wall_s=wall,
        returncode=proc.returncode,
        changes=tail.changes,
        steps=tail.steps,
        memory=sampler.report(),
        output_tail=text,
        timed_out=timed_out,
    )


@dataclass
class BenchStack:
    """A temporary stack of the project, driven by timed CLI runs."""

    project: ProjectStack
    env: dict[str, str]

    @property
    def cwd(self) -> Path:
        return self.project.work_dir

    def _stack_args(self) -> list[str]:
        return ["--stack", self.project.name]

    def write_config(self, config: Mapping[str, Any]) -> None:
        self.project.write_config(config)

    def up(
        self,
        *,
        timeout: float,
        parallel: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> EngineRun:
        extra = ["--parallel", str(parallel)] if parallel else []
        return run_pulumi(
            ["up", "--yes", "--skip-preview", *self._stack_args(), *extra],
            cwd=self.cwd,
            env={**self.env, **(extra_env or {})},
            timeout=timeout,
        )

    def preview(self, *, timeout: float) -> EngineRun:
        return run_pulumi(
            ["preview", *self._stack_args()], cwd=self.cwd, env=self.env, timeout=timeout
        )

    def destroy(self, *, timeout: float) -> EngineRun:
        return run_pulumi(
            ["destroy", "--yes", "--skip-preview", *self._stack_args()],
            cwd=self.cwd,
            env=self.env,
            timeout=timeout,
        )

    def _json(self, *args: str) -> dict[str, Any]:
        """A `pulumi stack …` command's JSON answer for this stack."""
        res = subprocess.run(
            ["pulumi", "stack", *args, *self._stack_args()],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        data: dict[str, Any] = json.loads(res.stdout)
        return data

    def outputs(self) -> dict[str, Any]:
        return self._json("output", "--json", "--show-secrets")

    def state(self) -> dict[str, Any]:
        """`pulumi stack export` (secrets stay encrypted): what every checkpoint save writes."""
        return self._json("export")

    def remove(self) -> None:
        subprocess.run(
            ["pulumi", "stack", "rm", "--yes", "--force", *self._stack_args()],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def bench_stack(tmp: Path, name: str) -> BenchStack:
    """A fresh stack on a temporary copy of the program (harness.new_stack)."""
    from tests.e2e.harness import new_stack  # noqa: PLC0415 - keeps import errors local

    project = new_stack(tmp, name)
    env = dict(os.environ)
    env.update(project.stack.workspace.env_vars)
    return BenchStack(project=project, env=env)


def empty_program_stack(tmp: Path) -> BenchStack:
    """A stack of a program that registers nothing (same runtime, same venv): the engine floor."""
    work = tmp / "empty"
    work.mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    project["name"] = "bench-empty"
    project["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    (work / "__main__.py").write_text('"""Registers nothing."""\n\nimport pulumi  # noqa: F401\n')
    env_vars = engine_env(tmp / "state")
    opts = auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=env_vars)
    stack = auto.create_or_select_stack("empty", work_dir=str(work), opts=opts)
    env = dict(os.environ)
    env.update(env_vars)
    return BenchStack(project=ProjectStack(stack=stack, work_dir=work, name="empty"), env=env)


def gate_report(run: EngineRun, outputs: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """The gate of one `up`: span of the check steps, and the probes' latencies from outputs."""
    checks = [s for s in run.steps_of(CHECK_TYPE_MARK) if s.op != "same"]
    probes = [s for s in run.steps_of(PROBE_TYPE_MARK) if s.op != "same"]
    out: dict[str, Any] = {"mode": mode, "wall_s": round(run.wall_s, 3), "checks_run": len(checks)}
    out["probe_runs"] = len(probes)
    starts = [s.start for s in (*checks, *probes) if s.start is not None]
    ends = [s.end for s in (*checks, *probes) if s.end is not None]
    if starts and ends:
        out["gate_span_s"] = round(max(ends) - min(starts), 3)
        out["first_check_start_s"] = round(min(starts), 3)
    durations = [d for d in (s.duration for s in checks) if d is not None]
    if durations:
        out["check_duration_s"] = summarize(durations).as_dict()
    apps = outputs.get("apps") or {}
    connect: list[float] = []
    rt50: list[float] = []
    rt95: list[float] = []
    for entry in apps.values():
        v = entry.get("verification") if isinstance(entry, Mapping) else None
        if not isinstance(v, Mapping):
            continue
        for key, bucket in (
            ("connectMs", connect),
            ("roundtripP50Ms", rt50),
            ("roundtripP95Ms", rt95),
        ):
            value = v.get(key)
            if isinstance(value, int | float):
                bucket.append(float(value))
    out["apps"] = len(apps)
    if connect:
        out["connect_ms"] = summarize(connect).as_dict()
    if rt50:
        out["roundtrip_p50_ms"] = summarize(rt50).as_dict()
    if rt95:
        out["roundtrip_p95_ms"] = summarize(rt95).as_dict()
    out["memory"] = run.memory
    if not run.ok:
        out["error"] = run.error()
    return out


def state_footprint(state: Mapping[str, Any]) -> dict[str, Any]:
    """Bytes of the checkpoint, per resource, and what fills them: each field of the resource
    states (its JSON text) as bytes per resource and a share of the whole."""
    resources = (state.get("deployment") or {}).get("resources") or []
    total = len(json.dumps(state, separators=(",", ":")))
    by_field: dict[str, int] = {}
    for resource in resources:
        for key, value in resource.items():
            by_field[key] = by_field.get(key, 0) + len(json.dumps(value, separators=(",", ":")))
    count = max(1, len(resources))
    return {
        "resources": len(resources),
        "bytes": total,
        "bytes_per_resource": round(total / count),
        "by_field": {
            key: {"bytes_per_resource": round(size / count), "share": round(size / total, 3)}
            for key, size in sorted(by_field.items(), key=lambda kv: -kv[1])
        },
    }

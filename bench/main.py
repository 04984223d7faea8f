"""The whole benchmark: raw-SQL floor, the engine from empty / steady state / the gate, memory.

Run through `bench/run.sh` (which sets up the toolchain environment and a hard time limit).
Writes bench/results/<date>-<shortsha>.json and the Markdown tables (printed, and written into
docs/benchmarks.md between the bench markers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import floor
from bench.stats import markdown_report, replace_between_markers, summarize, targets
from postgres_apps.config import GATE_SESSIONS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "bench" / "results"
NAMESPACE = "bench-apps"
OP_TIMEOUT = 420.0
"""No single `pulumi` command may take longer (it is cancelled, and the run goes on)."""


def log(msg: str) -> None:
    print(f"[bench {dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# facts


def _cmd(argv: list[str], timeout: float = 30) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def machine_facts() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_at_start": load,
    }


def versions(conn: psycopg.Connection[Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    if conn is not None:
        row = conn.execute("SHOW server_version").fetchone()
        out["postgresql"] = str(row[0]) if row else "?"
    out["pulumi"] = _cmd(["pulumi", "version"]) or "not on PATH"
    env_file = REPO / "localenv" / "versions.env"
    pins: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                pins[k.strip()] = v.strip()
    providers: dict[str, str] = {}
    sdks: dict[str, str] = {}
    for name in ("kubernetes", "postgresql", "random"):
        pin = pins.get(f"PULUMI_{name.upper()}_VERSION", "?")
        binary = shutil.which(f"pulumi-resource-{name}")
        providers[name] = f"{pin} ({'ambient ' + binary if binary else 'plugin cache'})"
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            sdks[f"pulumi_{name}"] = importlib.metadata.version(f"pulumi_{name}")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        sdks["pulumi"] = importlib.metadata.version("pulumi")
        sdks["psycopg"] = importlib.metadata.version("psycopg")
    out["providers"] = providers
    out["python_sdks"] = sdks
    return out


def git_commit() -> tuple[str, bool]:
    sha = _cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "nogit"
    dirty = bool(_cmd(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]))
    return sha, dirty


# ---------------------------------------------------------------------------------------------
# the server


class Server:
    """Where the floor (and with the cluster, the engine) runs; connect() opens an admin session."""

    def __init__(self) -> None:
        self.kind = ""
        self.client: dict[str, Any] = {}
        """host/port/timeouts for app-role logins (gate ingredients)."""
        self.engine_ready = False
        self.engine_problem = ""
        self.pod_mode = False
        self._connect: Callable[[], psycopg.Connection[Any]] | None = None
        self._throwaway: Any = None

    def connect(self) -> psycopg.Connection[Any]:
        if self._connect is None:
            raise RuntimeError("no server picked")
        return self._connect()

    def close(self) -> None:
        if self._throwaway is not None:
            self._throwaway.stop()


def pick_server() -> Server:
    """The local cluster's PostgreSQL when cluster and engine are ready, else a throw-away one."""
    from tests.e2e import harness  # noqa: PLC0415

    server = Server()
    try:
        harness.check_environment()
    except Exception as exc:
        server.engine_problem = str(exc)
    else:
        password = harness.admin_password()

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                host=harness.ADMIN_HOST,
                port=harness.ADMIN_PORT,
                user="postgres",
                password=password,
                dbname="postgres",
                connect_timeout=10,
                autocommit=True,
            )

        server._connect = connect
        server.client = {
            "host": harness.ADMIN_HOST,
            "port": harness.ADMIN_PORT,
            "connect_timeout": 10,
        }
        endpoint = f"{harness.ADMIN_HOST}:{harness.ADMIN_PORT}"
        server.kind = f"local cluster's PostgreSQL, admin endpoint {endpoint}"
        server.engine_ready = True
        nodes = harness.kubectl("get", "nodes", "-o", "json", check=False)
        if nodes.returncode == 0:
            items = json.loads(nodes.stdout).get("items", [])
            server.pod_mode = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for n in items
                for c in n.get("status", {}).get("conditions", [])
            )
        return server
    from tests.integration.pg_server import PgServer  # noqa: PLC0415

    log(f"engine parts cannot run ({server.engine_problem}); floor on a throw-away PostgreSQL")
    pg = PgServer.start()
    server._throwaway = pg

    def connect_throwaway() -> psycopg.Connection[Any]:
        return psycopg.connect(
            **pg.conninfo(user=pg.admin_user, password=pg.admin_password), autocommit=True
        )

    server._connect = connect_throwaway
    server.client = {"host": pg.host, "port": pg.port, "connect_timeout": 10}
    server.kind = "throw-away PostgreSQL 15 (tests/integration/pg_server.py, fsync=off)"
    return server


# ---------------------------------------------------------------------------------------------
# parts


def run_floor(server: Server, sizes: list[int], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with server.connect() as conn:
        swept = floor.sweep(conn)
        if swept:
            log(f"swept {swept} leftover bench_* databases/roles")
        for n in sizes:
            runs = [floor.measure(conn, floor.app_names("floor", n)) for _ in range(repeat)]
            creates = summarize([r.create_s for r in runs])
            out[str(n)] = {
                "repeats": repeat,
                "create_s": creates.as_dict(),
                "cleanup_s": summarize([r.cleanup_s for r in runs]).as_dict(),
                "per_app_create_ms": round(1000 * creates.p50 / n, 2),
                "by_statement_s": _median_by_kind([r.by_statement_s for r in runs]),
            }
            log(f"floor N={n}: create p50 {creates.p50:.3f} s")
    return out


def _median_by_kind(runs: list[dict[str, float]]) -> dict[str, float]:
    kinds = {k for r in runs for k in r}
    return {k: round(summarize([r.get(k, 0.0) for r in runs]).p50, 4) for k in sorted(kinds)}


def adjacent_floor(server: Server, n: int) -> float:
    """One floor measurement right before an engine run: both see the same machine load."""
    with server.connect() as conn:
        return floor.measure(conn, floor.app_names("floor", n)).create_s


CONNECTION_LIMIT = os.environ.get("BENCH_CONNECTION_LIMIT")
"""Overrides every benchmark app's connectionLimit (see `connection_limit`)."""
DEFAULT_APPS_CONNECTION_BUDGET = 96
"""What the apps' connection limits may add up to on the local server at max_connections 100:
its 97 non-superuser connections less one."""
_apps_connection_budget = DEFAULT_APPS_CONNECTION_BUDGET
"""The same for this run's server (`raised_max_connections` sets it from the server)."""


def connection_limit(n: int) -> int:
    """`GATE_SESSIONS` (2, the least pod mode accepts) while n apps fit the server's budget in
    pairs, else 1 (direct mode only: pod mode needs a bigger server, `--max-connections`)."""
    if CONNECTION_LIMIT is not None:
        return int(CONNECTION_LIMIT)
    return GATE_SESSIONS if n * GATE_SESSIONS <= _apps_connection_budget else 1


def _non_superuser_connections(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(max_connections, the connections left to roles that are not superusers)."""
    row = conn.execute(
        "SELECT current_setting('max_connections')::int,"
        " current_setting('superuser_reserved_connections')::int,"
        " coalesce(current_setting('reserved_connections', true), '0')::int"
    ).fetchone()
    if row is None:
        raise RuntimeError("the server did not report its connection settings")
    return int(row[0]), int(row[0]) - int(row[1]) - int(row[2])


@contextlib.contextmanager
def raised_max_connections(server: Server, wanted: int | None, notes: list[str]) -> Iterator[None]:
    """Run with the local server's `max_connections` at least `wanted` (ALTER SYSTEM and a
    restart, as the preflight's message tells an operator), and put it back afterwards.

    A 50-app stack in pod mode needs 2 connections per app (`GATE_SESSIONS`): more than the
    97 a server at the default 100 allows."""
    global _apps_connection_budget  # noqa: PLW0603 - the bench's one run-wide setting
    from tests.e2e.reliability_support import restart_postgres  # noqa: PLC0415

    with server.connect() as conn:
        current, allowed = _non_superuser_connections(conn)
    raise_it = wanted is not None and wanted > current
    if raise_it:
        with server.connect() as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET max_connections = {}").format(sql.Literal(wanted))
            )
        how = restart_postgres()
        notes.append(f"max_connections raised from {current} to {wanted} for this run ({how})")
        log(notes[-1])
        with server.connect() as conn:
            _, allowed = _non_superuser_connections(conn)
    _apps_connection_budget = allowed - 1
    try:
        yield
    finally:
        if raise_it:
            with server.connect() as conn:
                conn.execute("ALTER SYSTEM RESET max_connections")
            restart_postgres()
            log(f"max_connections back to {current}")
        _apps_connection_budget = DEFAULT_APPS_CONNECTION_BUDGET


def app_entries(kind: str, n: int) -> list[dict[str, Any]]:
    # apps at the default 20 would exceed the local server's budget (max_connections 100 - 3
    # reserved), which the admin pre-flight refuses; n + 1: the steady state adds one app
    names = floor.app_names(kind, n)
    limit = connection_limit(n + 1)
    return [{"name": name, "deletion": "drop", "connectionLimit": limit} for name in names]


def stack_config(
    apps: list[dict[str, Any]], *, gate: bool, mode: str = "direct", rerun: str = "on-change"
) -> dict[str, Any]:
    from tests.e2e.harness import base_config  # noqa: PLC0415

    cfg = base_config(apps, mode=mode, enabled=gate, timeoutSeconds=120, rerun=rerun)
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    return cfg


class Budget:
    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float, what: str, notes: list[str]) -> bool:
        if self.left() >= seconds:
            return True
        notes.append(f"skipped {what}: time budget exhausted ({self.left():.0f} s left)")
        log(notes[-1])
        return False


@contextlib.contextmanager
def temp_stack(name: str) -> Iterator[Any]:
    from bench.engine import bench_stack  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix=f"pgapps-bench-{name}-") as tmp:
        stack = bench_stack(Path(tmp), name)
        try:
            yield stack
        finally:
            stack.remove()


def run_engine(
    server: Server,
    sizes: list[int],
    *,
    steady_n: int,
    pod_sizes: frozenset[int],
    budget: Budget,
    notes: list[str],
) -> dict[str, Any]:
    from bench.engine import gate_report, state_footprint  # noqa: PLC0415

    result: dict[str, Any] = {"from_empty": {}, "gate": {}, "memory": {}, "steady": {}}

    _engine_start(result, notes)

    for n in sizes:
        if not budget.allows(60 + 4 * n, f"engine runs for {n} apps", notes):
            continue
        with temp_stack(f"bench-{n}") as stack:
            apps = app_entries(f"n{n}", n)
            stack.write_config(stack_config(apps, gate=False))
            adjacent = adjacent_floor(server, n)
            log(f"up from empty, {n} apps (gate off); adjacent floor {adjacent:.2f} s")
            up = stack.up(timeout=OP_TIMEOUT)
            entry = up.to_json(with_types=n == steady_n)
            entry["resources"] = up.changes.get("create", 0)
            entry["adjacent_floor_s"] = round(adjacent, 3)
            result["from_empty"][str(n)] = entry
            result["memory"][f"up from empty, {n} apps"] = up.memory
            log(f"  {up.wall_s:.2f} s, changes {up.changes}{'' if up.ok else ' ' + up.error()}")
            if up.ok and n == steady_n:
                result["state"] = state_footprint(stack.state())
                log(f"  state: {result['state']['bytes_per_resource']} bytes per resource")
                _steady(stack, n, result, budget, notes)
            if up.ok and budget.allows(30 + n, f"direct gate for {n} apps", notes):
                stack.write_config(stack_config(apps, gate=True, mode="direct"))
                log(f"gate on (direct), {n} apps")
                g = stack.up(timeout=OP_TIMEOUT)
                report = gate_report(g, stack.outputs() if g.ok else {}, "direct")
                result["gate"][f"direct-{n}"] = report
                result["memory"][f"gate (direct), {n} apps"] = g.memory
                log(f"  {g.wall_s:.2f} s, span {report.get('gate_span_s')} s")
                if g.ok and n == steady_n:
                    _add_one_with_gate(stack, n, result, notes)
                if (
                    g.ok
                    and server.pod_mode
                    and n in pod_sizes
                    and budget.allows(60 + 3 * n, f"pod gate for {n} apps", notes)
                ):
                    stack.write_config(stack_config(apps, gate=True, mode="pod"))
                    log(f"gate switched to pod mode, {n} apps")
                    p = stack.up(timeout=OP_TIMEOUT)
                    result["gate"][f"pod-{n}"] = gate_report(
                        p, stack.outputs() if p.ok else {}, "pod"
                    )
                    result["memory"][f"gate (pod), {n} apps"] = p.memory
                    log(f"  {p.wall_s:.2f} s{'' if p.ok else ' ' + p.error()}")
            log(f"destroy, {n} apps")
            d = stack.destroy(timeout=OP_TIMEOUT)
            entry["destroy_s"] = round(d.wall_s, 3)
            if not d.ok:
                notes.append(f"destroy of the {n}-app stack: {d.error()}")
    if not server.pod_mode:
        notes.append("pod-mode gate not measured: the local node is not Ready (cluster.sh status)")
    for n in sorted(pod_sizes - set(sizes)):
        notes.append(f"pod-mode gate for {n} apps not measured: {n} is not one of --sizes")
    _from_empty_repeats(server, steady_n, result, budget, notes)
    result["from_empty_variants"] = _variants(server, steady_n, budget, notes)
    return result


FROM_EMPTY_RUNS = 3
"""From-empty runs at the steady state's size (the first is the size's own run): the median and
the spread judge a change against the noise."""


def _from_empty_repeats(
    server: Server, n: int, result: dict[str, Any], budget: Budget, notes: list[str]
) -> None:
    """More from-empty runs of n apps on fresh stacks (gate off), then the median and spread."""
    first = result["from_empty"].get(str(n))
    if first is None or "wall_s" not in first:
        return
    runs = [{"wall_s": first["wall_s"], "adjacent_floor_s": first["adjacent_floor_s"]}]
    for i in range(1, FROM_EMPTY_RUNS):
        if not budget.allows(60 + 4 * n, f"from-empty run {i + 1} of {n} apps", notes):
            break
        with temp_stack(f"bench-again-{i}") as stack:
            stack.write_config(stack_config(app_entries(f"r{i}", n), gate=False))
            adjacent = adjacent_floor(server, n)
            up = stack.up(timeout=OP_TIMEOUT)
            log(f"from empty again ({i + 1}/{FROM_EMPTY_RUNS}), {n} apps: {up.wall_s:.2f} s")
            if up.ok:
                runs.append({"wall_s": round(up.wall_s, 3), "adjacent_floor_s": round(adjacent, 3)})
            else:
                notes.append(f"from-empty run {i + 1} of {n} apps: {up.error()}")
            stack.destroy(timeout=OP_TIMEOUT)
    walls = sorted(r["wall_s"] for r in runs)
    ratios = sorted(r["wall_s"] / r["adjacent_floor_s"] for r in runs if r["adjacent_floor_s"])
    first["repeats"] = {
        "runs": runs,
        "median_wall_s": walls[len(walls) // 2],
        "spread_s": round(walls[-1] - walls[0], 3),
        "median_ratio_to_floor": round(ratios[len(ratios) // 2], 2) if ratios else None,
    }


VARIANTS: tuple[tuple[str, int | None, dict[str, str]], ...] = (
    ("PULUMI_SKIP_CHECKPOINTS=true", None, {"PULUMI_SKIP_CHECKPOINTS": "true"}),
    ("--parallel 4", 4, {}),
)
"""Engine flags tried on a fresh stack from empty (same N as the steady state), gate off."""


def _variants(server: Server, n: int, budget: Budget, notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, parallel, env in VARIANTS:
        if not budget.allows(60 + 4 * n, f"from-empty variant {label}", notes):
            continue
        with temp_stack(f"bench-variant-{len(out)}") as stack:
            apps = app_entries(f"v{len(out)}", n)
            stack.write_config(stack_config(apps, gate=False))
            adjacent = adjacent_floor(server, n)
            up = stack.up(timeout=OP_TIMEOUT, parallel=parallel, extra_env=env)
            entry = up.to_json()
            entry.update(
                apps=n,
                resources=up.changes.get("create", 0),
                adjacent_floor_s=round(adjacent, 3),
            )
            log(f"variant {label}: {up.wall_s:.2f} s (adjacent floor {adjacent:.2f} s)")
            d = stack.destroy(timeout=OP_TIMEOUT)
            entry["destroy_s"] = round(d.wall_s, 3)
            out[label] = entry
    return out


def _engine_start(result: dict[str, Any], notes: list[str]) -> None:
    """`pulumi preview` of a program that registers nothing, and `pulumi version` (3 runs each)."""
    from bench.engine import empty_program_stack, run_pulumi  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="pgapps-bench-empty-") as tmp:
        empty = empty_program_stack(Path(tmp))
        runs = [empty.preview(timeout=120) for _ in range(3)]
        version_runs = [
            run_pulumi(["version"], cwd=empty.cwd, env=empty.env, timeout=60, events=False)
            for _ in range(3)
        ]
        empty.remove()
    result["engine_start"] = {
        "preview_empty_s": round(summarize([r.wall_s for r in runs]).p50, 3),
        "preview_empty_runs_s": [round(r.wall_s, 3) for r in runs],
        "cli_version_s": round(summarize([r.wall_s for r in version_runs]).p50, 3),
    }
    result["memory"]["preview of an empty program"] = runs[-1].memory
    if not all(r.ok for r in runs):
        notes.append(f"empty-program preview failed: {runs[-1].error()}")
    log(f"engine start: {result['engine_start']}")


REPEAT = 3
"""Runs of the no-op `up`/`preview` (cheap, and the machine is shared: the median is reported)."""


def _median_run(runs: list[Any]) -> dict[str, Any]:
    """The run with the median wall time, plus every run's wall time."""
    ordered = sorted(runs, key=lambda r: r.wall_s)
    out: dict[str, Any] = ordered[len(ordered) // 2].to_json()
    out["runs_s"] = [round(r.wall_s, 2) for r in runs]
    return out


def _steady(stack: Any, n: int, result: dict[str, Any], budget: Budget, notes: list[str]) -> None:
    steady: dict[str, Any] = {"apps": n}
    result["steady"] = steady
    log(f"no-op up / preview, {n} apps")
    noop = _median_run([stack.up(timeout=OP_TIMEOUT) for _ in range(REPEAT)])
    steady["noop_up"] = noop
    result["memory"][f"no-op up, {n} apps"] = noop["memory"]
    prev = _median_run([stack.preview(timeout=OP_TIMEOUT) for _ in range(REPEAT)])
    steady["noop_preview"] = prev
    log(f"  no-op up {noop['runs_s']} s, preview {prev['runs_s']} s")
    if not budget.allows(120, "add/remove one app", notes):
        return
    apps = app_entries(f"n{n}", n)
    extra = {
        "name": f"bench-n{n}-extra",
        "deletion": "drop",
        "connectionLimit": connection_limit(n + 1),
    }
    stack.write_config(stack_config([*apps, extra], gate=False))
    add = stack.up(timeout=OP_TIMEOUT)
    steady["add_one"] = add.to_json()
    log(f"  add one: {add.wall_s:.2f} s, {add.changes}")
    stack.write_config(stack_config(apps, gate=False))
    rm = stack.up(timeout=OP_TIMEOUT)
    steady["remove_one"] = rm.to_json()
    log(f"  remove one: {rm.wall_s:.2f} s, {rm.changes}")


def _add_one_with_gate(stack: Any, n: int, result: dict[str, Any], notes: list[str]) -> None:
    steady = result.setdefault("steady", {"apps": n})
    apps = app_entries(f"n{n}", n)
    noop = stack.up(timeout=OP_TIMEOUT)
    steady["noop_up_gate"] = noop.to_json()
    log(f"  no-op up with gate (rerun on-change): {noop.wall_s:.2f} s")
    # the design's default, `rerun: always`: every `up` runs every check again
    stack.write_config(stack_config(apps, gate=True, mode="direct", rerun="always"))
    always = stack.up(timeout=OP_TIMEOUT)
    steady["noop_up_gate_always"] = always.to_json()
    result["memory"][f"no-op up, gate rerun always, {n} apps"] = always.memory
    log(f"  no-op up with gate (rerun always): {always.wall_s:.2f} s, {always.changes}")
    if not always.ok:
        notes.append(f"no-op up with the gate, rerun always: {always.error()}")
    stack.write_config(stack_config(apps, gate=True, mode="direct"))
    stack.up(timeout=OP_TIMEOUT)  # back to on-change (the checks update: not measured)
    extra = {
        "name": f"bench-n{n}-extra",
        "deletion": "drop",
        "connectionLimit": connection_limit(n + 1),
    }
    stack.write_config(stack_config([*apps, extra], gate=True, mode="direct"))
    add = stack.up(timeout=OP_TIMEOUT)
    steady["add_one_gate"] = add.to_json()
    checks = [s for s in add.steps.values() if "ConnectivityCheck" in s.type + s.urn]
    steady["add_one_gate"]["checks_rerun"] = sum(1 for s in checks if s.op not in ("same", ""))
    log(f"  add one with gate: {add.wall_s:.2f} s, {add.changes}")
    if not add.ok:
        notes.append(f"add one app with the gate: {add.error()}")
    stack.write_config(stack_config(apps, gate=True, mode="direct"))
    back = stack.up(timeout=OP_TIMEOUT)
    if not back.ok:
        notes.append(f"removing the extra app again: {back.error()}")


# ---------------------------------------------------------------------------------------------


def cleanup(server: Server, engine: bool) -> None:
    with contextlib.suppress(Exception), server.connect() as conn:
        swept = floor.sweep(conn)
        if swept:
            log(f"final sweep dropped {swept} bench_* databases/roles")
    if engine:
        from tests.e2e.harness import kubectl  # noqa: PLC0415

        kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def render(files: list[Path]) -> None:
    """Rebuild the docs table from recorded results (targets recomputed with today's rules)."""
    blocks = []
    for i, path in enumerate(files):
        result = json.loads(path.read_text())
        result["targets"] = targets(result)
        title = "Latest run" if i == 0 else "Earlier run"
        rel = path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path
        blocks.append(
            f"### {title}: `{rel}`\n\n{markdown_report(result)}".replace("\n### ", "\n#### ")
        )
    body = "\n".join(blocks)
    print(body)
    DOCS.write_text(replace_between_markers(DOCS.read_text() if DOCS.exists() else "", body))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10,50", help="app counts (comma-separated)")
    parser.add_argument("--steady", type=int, default=50, help="apps for no-op/add-one")
    parser.add_argument(
        "--pod-apps",
        default="10,50",
        help="app counts (of --sizes) whose stack also runs the pod-mode gate (2 connections "
        "per app: 50 apps need --max-connections above 100)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=150,
        help="raise the local server's max_connections to this for the run and put it back "
        "after (ALTER SYSTEM + restart); 0: leave it",
    )
    parser.add_argument("--floor-repeat", type=int, default=3)
    parser.add_argument("--budget-min", type=float, default=20.0)
    parser.add_argument("--floor-only", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        help="only rebuild the docs table from these result files (newest first), run nothing",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        render(args.render)
        return 0
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    budget = Budget(args.budget_min)
    notes: list[str] = []

    sha, dirty = git_commit()
    now = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "commit": sha + ("-dirty" if dirty else ""),
        "machine": machine_facts(),
        "sizes": sizes,
    }
    server = pick_server()
    try:
        with server.connect() as conn:
            result["versions"] = versions(conn)
        result["server"] = {"kind": server.kind, "pod_mode": server.pod_mode}
        result["floor"] = run_floor(server, sizes, args.floor_repeat)
        with server.connect() as conn:
            result["gate_ingredients"] = floor.gate_ingredients(conn, server.client, max(sizes))
        log(f"gate ingredients: {result['gate_ingredients']}")
        if args.floor_only:
            notes.append("engine parts not run (--floor-only)")
        elif not server.engine_ready:
            notes.append(f"engine parts not run: {server.engine_problem}")
        else:
            try:
                with raised_max_connections(server, args.max_connections or None, notes):
                    result["engine"] = run_engine(
                        server,
                        sizes,
                        steady_n=args.steady,
                        pod_sizes=frozenset(int(x) for x in str(args.pod_apps).split(",") if x),
                        budget=budget,
                        notes=notes,
                    )
            except Exception as exc:
                notes.append(f"engine parts aborted: {exc!r}")
                traceback.print_exc()
    finally:
        cleanup(server, server.engine_ready and not args.floor_only)
        server.close()
    result["machine"]["loadavg_at_end"] = machine_facts()["loadavg_at_start"]
    result["targets"] = targets(result)
    result["notes"] = notes

    out = args.out or RESULTS / f"{now:%Y-%m-%d}-{sha}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    table = markdown_report(result)
    print(table)
    log(f"results: {out}")
    if not args.no_docs:
        body = f"Latest recorded run: `{out.relative_to(REPO)}`.\n\n{table}"
        DOCS.write_text(replace_between_markers(DOCS.read_text() if DOCS.exists() else "", body))
        log(f"table written into {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

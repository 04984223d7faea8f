"""Peak memory of the engine and its children, sampled from /proc while an operation runs.

A sampler thread walks /proc every `interval` seconds, keeps the processes that descend from this
one (the `pulumi` CLI the benchmark starts, the language host, the program, the providers), and
remembers each one's last VmHWM (its peak resident set so far) and the largest sum of VmRSS seen at
one instant. Short-lived processes that start and exit between two samples are missed; the interval
(0.1 s) is far below the lifetime of everything the engine starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

PROC = Path("/proc")


def classify(argv: list[str]) -> str | None:  # noqa: PLR0911 - one return per kind
    """What kind of engine process a command line is, or None if it is none of them.

    - `pulumi` → engine
    - `pulumi-language-python` → language host
    - `pulumi-resource-<name>` → provider <name> (the dynamic provider's launcher is a shell
      script that execs Python: see below)
    - python running `pulumi.dynamic` → dynamic provider (python)
    - python running the language host's exec script → program (python)
    """
    if not argv:
        return None
    exe = os.path.basename(argv[0])
    if exe == "pulumi":
        return "engine (pulumi)"
    if exe == "pulumi-language-python":
        return "language host"
    if exe.startswith("pulumi-resource-"):
        name = exe.removeprefix("pulumi-resource-")
        return f"provider {name}"
    if exe.startswith("python") or (len(argv) > 1 and "python" in exe):
        joined = " ".join(argv[1:])
        if "pulumi.dynamic" in joined or "pulumi-resource-pulumi-python" in joined:
            return "dynamic provider (python)"
        if "pulumi-language-python-exec" in joined or "__main__" in joined:
            return "program (python)"
        if "pulumi.policy" in joined:
            return "policy pack (python)"
        return None
    return None  # e.g. the /bin/sh launcher of the dynamic provider: its python child counts


def parse_status(text: str) -> dict[str, int]:
    """PPid, VmHWM and VmRSS (kB) of a /proc/<pid>/status text; missing fields are absent."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("PPid", "VmHWM", "VmRSS"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/<pid>/stat text, in seconds (the fields after the command)."""
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(parents: Mapping[int, int], root: int) -> set[int]:
    """Every pid whose parent chain reaches `root` (root excluded)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
    return seen


@dataclass
class _Proc:
    kind: str
    argv0: str
    hwm_kb: int = 0
    rss_kb: int = 0
    cpu_s: float = 0.0
    """User + system CPU at the last sample (what it used after that sample is not seen)."""


@dataclass
class MemorySampler:
    """Context manager: samples while the `with` block runs, then `.report()`."""

    interval: float = 0.1
    root: int = field(default_factory=os.getpid)
    procs: dict[int, _Proc] = field(default_factory=dict)
    peak_total_rss_kb: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        parents: dict[int, int] = {}
        statuses: dict[int, dict[str, int]] = {}
        for entry in PROC.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = parse_status((entry / "status").read_text())
            except OSError:
                continue
            if "PPid" in status:
                pid = int(entry.name)
                parents[pid] = status["PPid"]
                statuses[pid] = status
        total = 0
        for pid in descendants(parents, self.root):
            status = statuses[pid]
            known = self.procs.get(pid)
            if known is None:
                try:
                    raw = (PROC / str(pid) / "cmdline").read_bytes()
                except OSError:
                    continue
                argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
                kind = classify(argv)
                if kind is None:
                    continue
                known = self.procs[pid] = _Proc(kind=kind, argv0=argv[0] if argv else "?")
            known.hwm_kb = max(known.hwm_kb, status.get("VmHWM", 0))
            known.rss_kb = status.get("VmRSS", 0)
            with contextlib.suppress(OSError, IndexError, ValueError):  # it may just have exited
                known.cpu_s = parse_cpu_seconds((PROC / str(pid) / "stat").read_text())
            total += known.rss_kb
        self.peak_total_rss_kb = max(self.peak_total_rss_kb, total)
        self.samples += 1

    def report(self) -> dict[str, Any]:
        return summarize_procs(
            [(p.kind, p.hwm_kb) for p in self.procs.values()],
            self.peak_total_rss_kb,
            self.samples,
            cpu=[(p.kind, p.cpu_s) for p in self.procs.values()],
        )


def summarize_procs(
    procs: list[tuple[str, int]],
    peak_total_rss_kb: int,
    samples: int,
    cpu: list[tuple[str, float]] | None = None,
) -> dict[str, Any]:
    """Per kind: number of processes, the largest VmHWM (MiB) and, given `cpu`, the CPU seconds
    of all its processes; plus the peak total RSS."""
    by_kind: dict[str, dict[str, float | int]] = {}
    for kind, hwm_kb in procs:
        entry = by_kind.setdefault(kind, {"processes": 0, "peak_hwm_mib": 0.0})
        entry["processes"] = int(entry["processes"]) + 1
        entry["peak_hwm_mib"] = max(float(entry["peak_hwm_mib"]), round(hwm_kb / 1024, 1))
    for kind, seconds in cpu or []:
        entry = by_kind[kind]
        entry["cpu_s"] = round(float(entry.get("cpu_s", 0.0)) + seconds, 2)
    return {
        "by_kind": dict(sorted(by_kind.items())),
        "peak_total_rss_mib": round(peak_total_rss_kb / 1024, 1),
        "samples": samples,
    }

"""The memory sampler's pure parts: which process is which, /proc parsing, the process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.procmem import (
    CLOCK_TICKS,
    MemorySampler,
    classify,
    descendants,
    parse_cpu_seconds,
    parse_status,
    summarize_procs,
)


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["/root/.cache/postgres-apps/pulumi-v3.274.1/bin/pulumi", "up"], "engine (pulumi)"),
        (["/x/pulumi-language-python", "-root=/w", "127.0.0.1:4000"], "language host"),
        (["/x/pulumi-resource-postgresql", "127.0.0.1:4000"], "provider postgresql"),
        (["pulumi-resource-kubernetes"], "provider kubernetes"),
        (
            ["/w/.venv/bin/python", "-u", "-m", "pulumi.dynamic", "127.0.0.1:1"],
            "dynamic provider (python)",
        ),
        (["python3", "/x/pulumi-language-python-exec", "--root", "/w", "."], "program (python)"),
        (["/usr/bin/python3", "-m", "pytest"], None),
        (["bash", "-c", "sleep 1"], None),
        (["/bin/sh", "/x/pulumi-resource-pulumi-python", "127.0.0.1:1"], None),
        (["/usr/lib/postgresql/15/bin/postgres", "-D", "x"], None),
        ([], None),
    ],
)
def test_classify(argv: list[str], kind: str | None) -> None:
    assert classify(argv) == kind


def test_parse_status() -> None:
    text = "Name:\tpulumi\nPPid:\t42\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n"
    assert parse_status(text) == {"PPid": 42, "VmHWM": 204800, "VmRSS": 102400}
    # kernel threads have no Vm* lines
    assert parse_status("Name:\tkthreadd\nPPid:\t0\n") == {"PPid": 0}


def test_descendants_follows_the_whole_tree_only() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert descendants(parents, 10) == {11, 12, 13}
    assert descendants(parents, 12) == set()
    assert descendants(parents, 1) == {10, 11, 12, 13, 20, 21}


def test_summarize_procs_keeps_the_largest_of_each_kind() -> None:
    report = summarize_procs(
        [
            ("provider postgresql", 51200),
            ("provider postgresql", 102400),
            ("engine (pulumi)", 1024),
        ],
        peak_total_rss_kb=204800,
        samples=7,
    )
    assert report["by_kind"]["provider postgresql"] == {"processes": 2, "peak_hwm_mib": 100.0}
    assert report["by_kind"]["engine (pulumi)"] == {"processes": 1, "peak_hwm_mib": 1.0}
    assert report["peak_total_rss_mib"] == 200.0
    assert report["samples"] == 7
    assert "cpu_s" not in report["by_kind"]["engine (pulumi)"]  # no CPU given, none reported


def test_cpu_seconds_of_each_kind_are_summed() -> None:
    report = summarize_procs(
        [("provider postgresql", 1024), ("provider postgresql", 1024)],
        peak_total_rss_kb=2048,
        samples=1,
        cpu=[("provider postgresql", 1.25), ("provider postgresql", 0.5)],
    )
    assert report["by_kind"]["provider postgresql"]["cpu_s"] == 1.75


def test_parse_cpu_seconds_reads_utime_and_stime_after_the_command() -> None:
    # a command name with spaces and a parenthesis must not shift the fields
    fields = ["S", "1", *["0"] * 9, str(3 * CLOCK_TICKS), str(CLOCK_TICKS), "0"]
    assert parse_cpu_seconds("42 (a b) c) " + " ".join(fields)) == 4.0


def test_sampler_sees_a_real_child_process(tmp_path: object) -> None:
    """A child whose argv says `pulumi.dynamic` is found, classified and its memory recorded."""
    code = (
        'import time\nx = b"x" * (30 * 1024 * 1024)\n'
        "while time.process_time() < 0.4:\n    pass\ntime.sleep(0.6)\n"
    )
    with MemorySampler(interval=0.05) as sampler:
        proc = subprocess.Popen([sys.executable, "-c", code, "pulumi.dynamic"])
        time.sleep(0.8)
        proc.wait(timeout=10)
    report = sampler.report()
    assert sampler.samples > 3
    entry = report["by_kind"]["dynamic provider (python)"]
    assert entry["processes"] == 1
    assert entry["peak_hwm_mib"] >= 30
    assert 0.3 <= entry["cpu_s"] <= 1.5, entry  # the busy loop, seen before the sleep
    assert report["peak_total_rss_mib"] >= 30
    assert os.getpid() == sampler.root

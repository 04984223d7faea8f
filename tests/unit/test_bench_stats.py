"""The benchmark's pure code: percentiles, summaries, targets, the Markdown table, the markers."""

from __future__ import annotations

from typing import Any

import pytest

from bench.stats import (
    BEGIN_MARKER,
    END_MARKER,
    markdown_report,
    percentile,
    ratio,
    replace_between_markers,
    short_error,
    summarize,
    targets,
    touched,
    verdict,
)


def test_percentile_interpolates_like_numpy() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 0) == 15.0
    assert percentile(data, 100) == 50.0
    assert percentile(data, 50) == 35.0
    assert percentile(data, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile(list(reversed(data)), 95) == pytest.approx(48.0)
    assert percentile([7.0], 95) == 7.0


@pytest.mark.parametrize("pct", [-1.0, 100.5])
def test_percentile_rejects_out_of_range(pct: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0, 2.0], pct)


def test_percentile_and_summary_of_nothing_fail() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        summarize([])


def test_summarize() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert (s.count, s.min, s.max) == (4, 1.0, 4.0)
    assert s.p50 == pytest.approx(2.5)
    assert s.mean == pytest.approx(2.5)
    assert s.p95 == pytest.approx(3.85)
    assert s.as_dict()["p95"] == 3.85


def test_ratio_and_touched_and_verdict() -> None:
    assert ratio(9.0, 3.0) == 3.0
    assert ratio(None, 3.0) is None
    assert ratio(1.0, 0.0) is None
    assert touched({"same": 250, "create": 5, "update": 1}) == 6
    assert touched({"same": 10}) == 0
    assert verdict(2.9, 3.0) == "met"
    assert verdict(3.1, 3.0) == "missed"
    assert verdict(None, 3.0) == "not measured"


def sample_result() -> dict[str, Any]:
    return {
        "date": "2026-11-27T05:00:00+00:00",
        "commit": "abc1234",
        "machine": {"cores": 2, "memory_gib": 23.5, "kernel": "6.1"},
        "versions": {
            "postgresql": "15.18",
            "pulumi": "v3.274.1",
            "python": "3.11.7",
            "providers": {"postgresql": "3.16.2"},
        },
        "server": {"kind": "local cluster"},
        "gate_ingredients": {
            "apps": 50,
            "own_login_ms_p50": 30.0,
            "refused_login_ms_p50": 40.0,
            "privilege_query_ms_p50": 2.0,
            "isolation_by_logins_s": 98.0,
            "isolation_by_query_s": 0.1,
        },
        "floor": {
            "1": {"create_s": {"p50": 0.05}, "cleanup_s": {"p50": 0.02}},
            "50": {"create_s": {"p50": 2.0}, "cleanup_s": {"p50": 1.0}},
        },
        "engine": {
            "engine_start": {"preview_empty_s": 2.0, "cli_version_s": 0.1},
            "from_empty": {
                "50": {
                    "wall_s": 8.0,
                    "resources": 255,
                    "destroy_s": 6.0,
                    "adjacent_floor_s": 4.0,
                    "repeats": {
                        "runs": [
                            {"wall_s": 8.0, "adjacent_floor_s": 4.0},
                            {"wall_s": 9.0, "adjacent_floor_s": 4.0},
                            {"wall_s": 7.5, "adjacent_floor_s": 3.0},
                        ],
                        "median_wall_s": 8.0,
                        "spread_s": 1.5,
                        "median_ratio_to_floor": 2.25,
                    },
                    "by_type": {
                        "postgresql:index/database:Database": {
                            "steps": 50,
                            "span_s": 6.5,
                            "step_s": {"p50": 1.25, "max": 3.0},
                        }
                    },
                }
            },
            "state": {
                "resources": 300,
                "bytes": 1_380_000,
                "bytes_per_resource": 4600,
                "by_field": {
                    "outputs": {"bytes_per_resource": 1364, "share": 0.296},
                    "stackTrace": {"bytes_per_resource": 1076, "share": 0.233},
                },
            },
            "steady": {
                "apps": 50,
                "noop_up": {"wall_s": 9.5, "touched": 0},
                "add_one": {"wall_s": 4.0, "touched": 5},
            },
            "gate": {
                "direct-50": {
                    "mode": "direct",
                    "apps": 50,
                    "wall_s": 30.0,
                    "gate_span_s": 12.0,
                    "check_duration_s": {"p50": 1.5},
                    "connect_ms": {"p50": 3.0, "p95": 9.0},
                    "roundtrip_p50_ms": {"p50": 0.4},
                    "roundtrip_p95_ms": {"max": 120.0},
                },
                "pod-10": {"mode": "pod", "apps": 10, "error": "`pulumi up` failed (exit 255)"},
                "pod-50": {"mode": "pod", "apps": 50, "wall_s": 28.0, "gate_span_s": 20.0},
            },
            "memory": {
                "up from empty, 50 apps": {
                    "by_kind": {"engine (pulumi)": {"peak_hwm_mib": 180.0}},
                    "peak_total_rss_mib": 600.0,
                }
            },
        },
    }


def test_targets_use_the_right_numbers() -> None:
    got = {t["target"]: (t["measured"], t["verdict"]) for t in targets(sample_result())}
    assert got["50 apps from empty ≤ 3x the raw-SQL floor"] == ("4.0x", "missed")
    assert got["no-op `pulumi up` with 50 apps ≤ 5 s beyond engine start"] == ("7.50 s", "missed")
    gate = "the gate for 50 apps ≤ 20 s, first check to last (direct mode)"
    assert got[gate] == ("12.0 s", "met")
    assert got["probe round trip p95 < 100 ms (worst app, direct mode)"] == ("120.0 ms", "missed")
    assert got["pod-mode gate for 10 apps ≤ 10 s wall (issue 17)"] == (
        "failed",
        "missed (the gate failed)",
    )
    assert got["pod-mode gate for 50 apps ≤ 30 s wall (issue 17)"] == ("28.0 s", "met")


def test_the_50_app_no_op_target_is_not_judged_on_another_size() -> None:
    result = sample_result()
    result["engine"]["steady"]["apps"] = 200
    got = {t["target"]: (t["measured"], t["verdict"]) for t in targets(result)}
    assert got["no-op `pulumi up` with 50 apps ≤ 5 s beyond engine start"] == (
        "not measured (steady rows at 200 apps)",
        "not measured",
    )


def test_targets_without_engine_are_not_measured() -> None:
    result = {"floor": {"50": {"create_s": {"p50": 2.0}}}}
    assert {t["verdict"] for t in targets(result)} == {"not measured"}


def test_markdown_report_has_every_section_and_row() -> None:
    result = sample_result()
    result["targets"] = targets(result)
    result["notes"] = ["pod-mode gate not measured"]
    md = markdown_report(result)
    assert "| 50 | 2.00 s | 1.00 s | 8.00 s | 4.0x | 2.0x | 255 | 6.00 s |" in md
    assert "| 1 | 0.05 s | 0.02 s | — | — | — | — | — |" in md
    assert "| no-op `pulumi up` (50 apps) | 9.50 s | 7.50 s | 0 |" in md
    assert "| add 1 app to 50 (`pulumi up`, gate off) | 4.00 s | 2.00 s | 5 |" in md
    assert "| direct | 50 | 30.0 s | 12.0 s | 1.50 s | 3.0 ms / 9.0 ms | 0.4 ms / 120.0 ms |" in md
    assert "| pod | 10 | `pulumi up` failed (exit 255) |" in md
    assert "| up from empty, 50 apps | 180 MiB | 600 MiB |" in md
    assert "- pod-mode gate not measured" in md
    assert (
        "50 apps from empty, 3 runs on fresh stacks: 8.00 s / 9.00 s / 7.50 s; median 8.00 s, "
        "spread 1.50 s, median ratio to the adjacent floor 2.2x." in md
    )
    assert "300 resources, 1380000 bytes, 4600 bytes per resource" in md
    assert "| `stackTrace` | 1076 | 23.3 % |" in md
    assert "| `postgresql:index/database:Database` | 50 | 1.25 s | 3.00 s | 6.50 s |" in md
    refused = "| login refused by another app's database (isolation, per pair) | 40.0 ms |"
    assert f"{refused} 98.0 s (n·(n-1) = 2450 logins) |" in md
    # every table row has the same number of cells as its header
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            widths = {line.count(" | ") for line in rows}
            assert len(widths) == 1, block


def test_markdown_escapes_pipes_in_cells() -> None:
    result = sample_result()
    result["engine"]["gate"]["pod-10"]["error"] = "a | b"
    assert "a \\| b" in markdown_report(result)


def test_replace_between_markers_replaces_only_the_block() -> None:
    text = f"# Title\n\nintro\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\nafter\n"
    out = replace_between_markers(text, "new table\n")
    assert out == f"# Title\n\nintro\n\n{BEGIN_MARKER}\nnew table\n{END_MARKER}\n\nafter\n"
    assert replace_between_markers(out, "new table") == out


def test_replace_between_markers_appends_when_missing() -> None:
    out = replace_between_markers("# Title\n", "table")
    assert out == f"# Title\n\n{BEGIN_MARKER}\ntable\n{END_MARKER}\n"


def test_a_failed_gate_is_not_reported_as_met() -> None:
    result = sample_result()
    gate = result["engine"]["gate"]["direct-50"]
    gate["error"] = "`pulumi up` failed (exit 1): check latency failed"
    gate["checks_run"] = 12
    gate["gate_span_s"] = 9.8  # short because it stopped early
    got = {t["target"]: (t["measured"], t["verdict"]) for t in targets(result)}
    assert got["the gate for 50 apps ≤ 20 s, first check to last (direct mode)"] == (
        "failed after 9.80 s (12 checks ran)",
        "missed (the gate failed)",
    )
    assert got["probe round trip p95 < 100 ms (worst app, direct mode)"][1] == "not measured"


def test_short_error_keeps_the_provider_message() -> None:
    text = (
        "`pulumi up` failed (exit 1): + check creating error: Traceback / raise X( / "
        'postgres_apps.verification.provider.VerificationError: app "a": check "latency" failed: '
        "connect 258 ms > 250 ms / error: update failed"
    )
    assert short_error(text) == 'failed: app "a": check "latency" failed: connect 258 ms > 250 ms'
    assert short_error("x" * 500).endswith("…")
    assert len(short_error("x" * 500)) == 240

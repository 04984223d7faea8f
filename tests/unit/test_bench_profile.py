"""`bench.profile` reads pprof's `-top -cum` text (the shape pprof prints; the function names are
those of pulumi v3.274.1's source, the numbers made up)."""

from __future__ import annotations

from bench.profile import parse_top, parts_of

P = "github.com/pulumi/pulumi/pkg/v3/"
TOP = f"""File: pulumi
Type: cpu
Duration: 21.5s, Total samples = 1.25mins (348.84%)
Showing nodes accounting for 70s, 93.33% of 75s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%     38.20s 50.93%  {P}backend.(*SnapshotManager).saveSnapshot
     120ms  0.16%  0.16%     20.10s 26.80%  {P}resource/stack.SerializeDeploymentWithMetadata
         0     0%  0.16%     15.50s 20.67%  {P}backend/diy.(*diyBackend).saveCheckpoint
     2.50s  3.33%  3.49%      9.30s 12.40%  encoding/json.Marshal
         0     0%  3.49%      9.10s 12.13%  runtime.gcBgMarkWorker
"""


def test_parse_top_reads_units_and_unitless_zeros() -> None:
    total, rows = parse_top(TOP)
    assert total == 75.0
    assert [r["name"].rsplit("/", 1)[-1] for r in rows] == [
        "backend.(*SnapshotManager).saveSnapshot",
        "stack.SerializeDeploymentWithMetadata",
        "diy.(*diyBackend).saveCheckpoint",
        "json.Marshal",
        "runtime.gcBgMarkWorker",
    ]
    assert rows[1] == {
        "name": "github.com/pulumi/pulumi/pkg/v3/resource/stack.SerializeDeploymentWithMetadata",
        "flat_s": 0.12,
        "cum_s": 20.1,
    }


def test_parts_take_the_cumulative_time_of_their_function_or_zero() -> None:
    parts = parts_of(parse_top(TOP)[1])
    assert parts["checkpoint save (SnapshotManager.saveSnapshot)"] == 38.2
    assert parts["  serialize the deployment (stack.SerializeDeploymentWithMetadata)"] == 20.1
    assert parts["    JSON marshal"] == 9.3
    assert parts["garbage collector (runtime.gcBgMarkWorker)"] == 9.1
    assert parts["gRPC (google.golang.org/grpc)"] == 0.0

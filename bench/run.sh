#!/usr/bin/env bash
# The whole benchmark in one command (`make bench`): raw-SQL floor, `pulumi up` from empty for
# N = 1, 10, 50 apps, no-op up/preview, add one app, the verification gate, peak memory.
# Writes bench/results/<date>-<shortsha>.json and the Markdown table (printed, and written into
# docs/benchmarks.md between the bench markers). See docs/benchmarks.md.
#
# Usage: bench/run.sh [--floor-only] [--sizes 1,10,50] [--steady 50] [--pod-apps 10,50] [--max-connections 150]
#                     [--budget-min 20] [--no-docs] [--out FILE]
# Environment: BENCH_TIMEOUT (seconds, default 1500): hard limit of the whole run; after it the
# run is interrupted (SIGINT, then SIGKILL 60 s later) and its temporary stacks are abandoned
# (the next run sweeps any bench_* database/role it finds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

if [[ ! -x .venv/bin/python ]]; then
  ./localenv/venv.sh
fi

# The toolchain (pulumi CLI, language host, providers) and the cluster's kubeconfig, if built.
if [[ -f localenv/env.sh ]]; then
  # shellcheck source=/dev/null
  source localenv/env.sh
fi

timeout_s="${BENCH_TIMEOUT:-1500}"
export PYTHONUNBUFFERED=1
exec timeout --signal=INT --kill-after=60 "$timeout_s" \
  .venv/bin/python -m bench.main "$@"

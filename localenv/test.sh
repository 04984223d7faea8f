#!/usr/bin/env bash
# The README's test command (`make test`): every tier, in order of cost.
#   lint → unit (mocks) → integration (real PostgreSQL the tests start; the Pulumi toolchain for
#   the no-cluster YAML-host tests) → e2e (real Pulumi engine + providers, local Kubernetes control plane and node).
# Usage: localenv/test.sh [all|lint|unit|integration|e2e] [extra pytest args]
# Nothing is skipped silently: if the toolchain or the local cluster cannot be built or started,
# this fails and says which step failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tier="${1:-all}"
[[ $# -gt 0 ]] && shift

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

step "Debian packages and Python environment"
./localenv/packages.sh || die "could not install the Debian packages the tests need"
./localenv/venv.sh || die "could not create .venv (see pip output above)"

run_lint() {
  step "lint: ruff check, ruff format --check, mypy"
  .venv/bin/ruff check . || die "ruff check"
  .venv/bin/ruff format --check . || die "ruff format --check (run: .venv/bin/ruff format .)"
  .venv/bin/mypy . || die "mypy"
  .venv/bin/mypy docs/examples/python-program/__main__.py || die "mypy (the README example)"
}

run_go_tests() {
  step "go test: the project's own plugins (localenv/toolchain, see docs/toolchain.md)"
  local mod
  for mod in pulumi-language-python pulumi-language-yaml pulumi-resource-postgresql pulumi-resource-random; do
    go -C "localenv/toolchain/$mod" test ./... || die "go test localenv/toolchain/$mod"
  done
}

run_pytest() {
  local what="$1"; shift
  step "pytest $what"
  .venv/bin/pytest "$what" "$@" || die "pytest $what"
}

prepare_toolchain() {
  step "toolchain (Pulumi CLI, language hosts, providers)"
  ./localenv/toolchain.sh || die "the Pulumi toolchain could not be built or found (log above)"
}

prepare_real_environment() {
  prepare_toolchain
  step "local cluster (control plane, node, PostgreSQL)"
  ./localenv/cluster.sh up || die "the local cluster could not be started (log above)"
  # The toolchain on PATH, the local backend, no plugin downloads, the cluster's kubeconfig.
  # shellcheck source=localenv/env.sh disable=SC1091
  source ./localenv/env.sh
}

case "$tier" in
  lint) run_lint ;;
  unit) run_go_tests; run_pytest tests/unit "$@" ;;
  integration) prepare_toolchain; run_pytest tests/integration "$@" ;;
  e2e) prepare_real_environment; run_pytest tests/e2e "$@" ;;
  all)
    run_lint
    run_go_tests
    run_pytest tests/unit "$@"
    prepare_toolchain
    run_pytest tests/integration "$@"
    prepare_real_environment
    run_pytest tests/e2e "$@"
    ;;
  *) die "unknown tier '$tier' (all|lint|unit|integration|e2e)" ;;
esac
step "all requested tiers passed ($tier)"

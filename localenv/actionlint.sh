#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow linter) from its Go module and prints the binary's
# path. Cached under ~/.cache/postgres-apps/actionlint-v<ver>/bin/ (override the root with
# POSTGRES_APPS_CACHE): a second run builds nothing. Exit non-zero when it cannot be built.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-1.7.12}"
cache_root="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
dest="$cache_root/actionlint-v$ACTIONLINT_VERSION/bin"
bin="$dest/actionlint"

if [[ -x $bin ]] && "$bin" -version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "actionlint.sh: go is not on PATH; cannot build actionlint v$ACTIONLINT_VERSION" >&2
  exit 1
fi

mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# actionlint's go.mod has no replace directives, so `go install module@version` works as is.
# The version ldflag makes `actionlint -version` report the release instead of "(devel)".
if ! GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath \
  -ldflags "-s -w -X github.com/rhysd/actionlint.version=v$ACTIONLINT_VERSION" \
  "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION" >&2; then
  echo "actionlint.sh: building github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION failed" >&2
  exit 1
fi
mv "$tmp/actionlint" "$bin"
echo "$bin"

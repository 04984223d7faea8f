#!/usr/bin/env bash
# Ensures the Pulumi toolchain this project needs: the CLI, the Python language host (+ its scripts),
# the provider plugins and the YAML language host pinned in localenv/versions.env. Idempotent.
#
#   1. A `pulumi` already on PATH (official installer) and plugins already installed in
#      ~/.pulumi/plugins are used as they are: nothing is built.
#   2. Otherwise the missing pieces are built from their Go modules (wrapper modules in
#      localenv/toolchain/) into ${POSTGRES_APPS_CACHE:-~/.cache/postgres-apps}/<tool>-v<version>/bin,
#      atomically (temp dir + rename). A second run builds nothing and prints "cached".
#   3. The plugins are installed into $PULUMI_HOME/plugins (<repo>/.state/pulumi-home) with
#      `pulumi plugin install resource <name> <version> -f <binary>`, so the engine never downloads.
#
# Usage: localenv/toolchain.sh [--check] [--verbose]
#   --check    say what is missing and exit 1 if anything is; builds and installs nothing.
#   --verbose  also echo the build log to the terminal.
# Logs: <repo>/.state/logs/toolchain-<time>.log
set -Eeuo pipefail

CHECK=0
VERBOSE=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    --verbose) VERBOSE=1 ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "toolchain.sh: unknown option $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

# shellcheck source=localenv/env.sh disable=SC1091
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
REPO="$POSTGRES_APPS_ROOT"
TOOLCHAIN_SRC="$REPO/localenv/toolchain"
CACHE="$POSTGRES_APPS_CACHE_DIR"
USER_PULUMI_HOME="${HOME}/.pulumi"

GO_TAGS="osusergo,grpcnotrace"
export CGO_ENABLED=0

LOG=""
STEP="start"
open_log() {
  if [[ -z "$LOG" && $CHECK == 0 ]]; then
    mkdir -p "$REPO/.state/logs"
    LOG="$REPO/.state/logs/toolchain-$(date -u +%Y%m%dT%H%M%SZ)-$$.log"
  fi
}
log() {
  open_log
  if [[ -n "$LOG" ]]; then printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >>"$LOG"; fi
}
say() {
  echo "toolchain: $*"
  if [[ -n "$LOG" ]]; then log "$*"; fi
}
on_error() {
  local rc=$?
  trap - ERR
  # In a subshell: let the main shell report, once.
  if [[ "$BASHPID" != "$$" ]]; then exit "$rc"; fi
  rm -rf "$CACHE"/.build-*-"$$"-* 2>/dev/null || true
  echo "toolchain: FAILED at step: $STEP (exit $rc)" >&2
  if [[ -n "$LOG" && -s "$LOG" ]]; then
    echo "toolchain: last lines of $LOG:" >&2
    tail -n 25 "$LOG" >&2
  fi
  exit "$rc"
}
trap on_error ERR

# run CMD... : runs a command with its output in the log (and on the terminal with --verbose).
run() {
  open_log
  log "+ $*"
  if [[ $VERBOSE == 1 ]]; then
    "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
  fi
  "$@" >>"$LOG" 2>&1
}

# fingerprint FILE... : a short hash of the files that define a build (wrapper go.mod/go.sum/sources,
# this script's build recipe version), stored in the cache entry; a mismatch means "rebuild".
RECIPE=3
fingerprint() {
  { echo "recipe=$RECIPE go=$(go env GOVERSION 2>/dev/null || echo none)"; cat "$@"; } | sha256sum | cut -c1-16
}

# cache_ok DIR FP BIN... : the cache entry DIR is complete for fingerprint FP.
cache_ok() {
  local dir="$1" fp="$2" bin
  shift 2
  [[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$fp" ]] || return 1
  for bin in "$@"; do [[ -x "$dir/bin/$bin" ]] || return 1; done
}

# commit_entry TMP DIR FP : atomically replaces DIR by the finished TMP.
commit_entry() {
  local tmp="$1" dir="$2" fp="$3"
  echo "$fp" >"$tmp/.complete"
  chmod 755 "$tmp"
  if [[ -e "$dir" ]]; then
    rm -rf "$dir.old"
    mv "$dir" "$dir.old"
  fi
  mv "$tmp" "$dir"
  rm -rf "$dir.old"
}

new_tmp() {
  mkdir -p "$CACHE"
  mktemp -d "$CACHE/.build-$1-$$-XXXXXX"
}

# timed_build DIR OUT METRICS -- go build args... : go build in module DIR, with wall time, peak RSS
# and size recorded.
timed_build() {
  local dir="$1" out="$2" metrics="$3"
  shift 4
  local tfile start end
  tfile="$(dirname "$out")/../.time-$(basename "$out")"
  start=$(date +%s)
  STEP="go build $(basename "$out")"
  say "building $(basename "$out") (log: $LOG)"
  # GNU time (Debian package `time`) gives the peak RSS; without it the build runs untimed.
  local timer=()
  if [[ -x /usr/bin/time ]]; then timer=(/usr/bin/time -v -o "$tfile"); fi
  run "${timer[@]}" go -C "$dir" build -p 2 -trimpath -tags "$GO_TAGS" -o "$out" "$@"
  end=$(date +%s)
  local rss=""
  if [[ -f "$tfile" ]]; then
    cat "$tfile" >>"$LOG"
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tfile")
    rm -f "$tfile"
  fi
  printf '%s wall_s=%s peak_rss_kib=%s size_bytes=%s\n' "$(basename "$out")" "$((end - start))" \
    "${rss:-?}" "$(stat -c %s "$out")" >>"$metrics"
  say "built $(basename "$out") in $((end - start)) s, peak RSS $((${rss:-0} / 1024)) MiB, $(du -h "$out" | cut -f1)"
}

# module_dir MOD@VER : downloads a module through the proxy and prints its (read-only) directory.
module_dir() {
  local json dir
  json="$( (cd "${TMPDIR:-/tmp}" && go mod download -json "$1") || true)"
  dir="$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$dir" ]]; then
    log "go mod download $1: $json"
    echo "cannot download $1: $(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p')" >&2
    return 1
  fi
  echo "$dir"
}

# find_outside_cache NAME : NAME on PATH, skipping this project's cache (a user's own install).
find_outside_cache() {
  local IFS=: d
  for d in $PATH; do
    [[ -n "$d" && "$d" != "$CACHE"* && -x "$d/$1" && ! -d "$d/$1" ]] && {
      echo "$d/$1"
      return 0
    }
  done
  return 1
}

MISSING=()

# ---------------------------------------------------------------- the CLI and the Python host
CLI_ENTRY="$CACHE/pulumi-v$PULUMI_VERSION"
CLI_BINS=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python)
cli_fp() {
  local files=("$TOOLCHAIN_SRC/pulumi/go.mod" "$TOOLCHAIN_SRC/pulumi/go.sum"
    "$TOOLCHAIN_SRC/pulumi-language-python/go.mod" "$TOOLCHAIN_SRC/pulumi-language-python/go.sum") f
  for f in "$TOOLCHAIN_SRC"/pulumi-language-python/*.go; do [[ "$f" != *_test.go ]] && files+=("$f"); done
  fingerprint "${files[@]}"
}
CLI_FP="$(cli_fp)"
PULUMI_BIN=""

build_cli() {
  local tmp metrics sdk
  tmp="$(new_tmp pulumi)"
  mkdir -p "$tmp/bin"
  metrics="$tmp/build-metrics.txt"
  STEP="download github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
  sdk="$(module_dir "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION")"
  timed_build "$TOOLCHAIN_SRC/pulumi" "$tmp/bin/pulumi" "$metrics" -- \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  timed_build "$TOOLCHAIN_SRC/pulumi-language-python" "$tmp/bin/pulumi-language-python" "$metrics" -- \
    -ldflags "-s -w -X main.version=$PULUMI_VERSION" .
  STEP="copy the Python scripts from the sdk/v3 module"
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$tmp/bin/pulumi-language-python-exec"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$tmp/bin/pulumi-resource-pulumi-python"
  commit_entry "$tmp" "$CLI_ENTRY" "$CLI_FP"
}

ensure_cli() {
  STEP="check the Pulumi CLI"
  local sys_pulumi sys_host
  if cache_ok "$CLI_ENTRY" "$CLI_FP" "${CLI_BINS[@]}"; then
    PULUMI_BIN="$CLI_ENTRY/bin/pulumi"
    say "pulumi v$PULUMI_VERSION + python language host: cached ($CLI_ENTRY/bin)"
    return
  fi
  if sys_pulumi="$(find_outside_cache pulumi)"; then
    sys_host="$(dirname "$sys_pulumi")/pulumi-language-python"
    if [[ -x "$sys_host" ]] || find_outside_cache pulumi-language-python >/dev/null; then
      PULUMI_BIN="$sys_pulumi"
      say "pulumi: using the installed $sys_pulumi ($("$sys_pulumi" version 2>/dev/null || echo '?')); nothing to build"
      return
    fi
  fi
  if [[ $CHECK == 1 ]]; then
    MISSING+=("pulumi v$PULUMI_VERSION + pulumi-language-python (not installed, not in $CLI_ENTRY)")
    return
  fi
  build_cli
  PULUMI_BIN="$CLI_ENTRY/bin/pulumi"
}

# ---------------------------------------------------------------- provider plugins
# build_provider_kubernetes TMP METRICS
build_provider_kubernetes() {
  local tmp="$1" metrics="$2" wrap="$TOOLCHAIN_SRC/pulumi-resource-kubernetes" mod src stamp
  # The release commit's pseudo-version, pinned once: in the wrapper's go.mod.
  mod="github.com/pulumi/pulumi-kubernetes/provider/v4@$(awk '$1 == "github.com/pulumi/pulumi-kubernetes/provider/v4" {print $2}' "$wrap/go.mod")"
  src="$wrap/src"
  stamp="$mod generated VERSION=$PULUMI_KUBERNETES_VERSION"
  if [[ ! -f "$src/.generated" || "$(cat "$src/.generated")" != "$stamp" ]]; then
    STEP="download $mod"
    local dir
    dir="$(module_dir "$mod")"
    STEP="prepare a writable copy of $mod with the generated embed files"
    rm -rf "$src" "$src.tmp"
    cp -r "$dir" "$src.tmp"
    chmod -R u+w "$src.tmp"
    # provider/go.mod replaces sdk/v4 with ../sdk (not in the zip): require the same release instead.
    go -C "$src.tmp" mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4 \
      -require="github.com/pulumi/pulumi-kubernetes/sdk/v4@v$PULUMI_KUBERNETES_VERSION"
    STEP="generate schema-embed.json / terraform-mapping-embed.json (go run generate.go)"
    run env GOFLAGS=-mod=mod VERSION="$PULUMI_KUBERNETES_VERSION" \
      go -C "$src.tmp/cmd/pulumi-resource-kubernetes" run generate.go
    echo "$stamp" >"$src.tmp/.generated"
    mv "$src.tmp" "$src"
  fi
  timed_build "$wrap" "$tmp/bin/pulumi-resource-kubernetes" "$metrics" -- \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" \
    github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes
}

# build_provider_local NAME TMP METRICS : this project's own provider (see docs/toolchain.md).
build_provider_local() {
  local name="$1" tmp="$2" metrics="$3" ver_var
  ver_var="PULUMI_$(echo "$name" | tr '[:lower:]' '[:upper:]')_VERSION"
  timed_build "$TOOLCHAIN_SRC/pulumi-resource-$name" "$tmp/bin/pulumi-resource-$name" "$metrics" -- \
    -ldflags "-s -w -X main.version=${!ver_var}" .
}

provider_fp() {
  local wrap="$TOOLCHAIN_SRC/pulumi-resource-$1" files=()
  files+=("$wrap/go.mod" "$wrap/go.sum")
  local f
  for f in "$wrap"/*.go; do [[ -e "$f" && "$f" != *_test.go ]] && files+=("$f"); done
  fingerprint "${files[@]}"
}

# ensure_plugin NAME VERSION BUILDER
ensure_plugin() {
  local name="$1" ver="$2" builder="$3"
  local dest_dir="$PULUMI_HOME/plugins/resource-$name-v$ver"
  local dest="$dest_dir/pulumi-resource-$name"
  local entry="$CACHE/pulumi-resource-$name-v$ver"
  local user_bin="$USER_PULUMI_HOME/plugins/resource-$name-v$ver/pulumi-resource-$name"
  local fp src=""
  STEP="check plugin $name v$ver"
  fp="$(provider_fp "$name")"
  if [[ -x "$dest" && ! -e "$dest_dir.partial" ]]; then
    if [[ ! -f "$dest_dir/.postgres-apps-fp" ]] || [[ "$(cat "$dest_dir/.postgres-apps-fp")" == "$fp" ]]; then
      say "plugin $name v$ver: installed ($dest_dir)"
      return
    fi
  fi
  if [[ "$USER_PULUMI_HOME" != "$PULUMI_HOME" && -x "$user_bin" && ! -e "$(dirname "$user_bin").partial" ]]; then
    src="$user_bin"
    say "plugin $name v$ver: using the user's installed $user_bin; nothing to build"
  elif cache_ok "$entry" "$fp" "pulumi-resource-$name"; then
    src="$entry/bin/pulumi-resource-$name"
    say "plugin $name v$ver: cached ($entry/bin)"
  elif [[ $CHECK == 1 ]]; then
    MISSING+=("plugin $name v$ver (not in $PULUMI_HOME/plugins, ~/.pulumi/plugins or $entry)")
    return
  else
    local tmp
    tmp="$(new_tmp "$name")"
    mkdir -p "$tmp/bin"
    "$builder" "$tmp" "$tmp/build-metrics.txt"
    commit_entry "$tmp" "$entry" "$fp"
    src="$entry/bin/pulumi-resource-$name"
  fi
  if [[ $CHECK == 1 ]]; then
    MISSING+=("plugin $name v$ver is available ($src) but not installed in $PULUMI_HOME/plugins")
    return
  fi
  STEP="pulumi plugin install resource $name $ver"
  run "$PULUMI_BIN" plugin install resource "$name" "$ver" -f "$src" --reinstall
  if [[ "$src" == "$entry/bin/"* ]]; then echo "$fp" >"$dest_dir/.postgres-apps-fp"; fi
  say "plugin $name v$ver: installed into $dest_dir"
}

build_kubernetes() { build_provider_kubernetes "$1" "$2"; }
build_random() { build_provider_local random "$1" "$2"; }
build_postgresql() { build_provider_local postgresql "$1" "$2"; }

# ---------------------------------------------------------------- the YAML language host
# Only for Pulumi YAML programs that consume the package (docs/other-languages.md). The CLI looks for
# it next to itself, on PATH, then in $PULUMI_HOME/plugins/language-yaml-v<version>/: it is installed
# there, like the providers (a copy on PATH elsewhere than next to `pulumi` makes the CLI warn
# "using pulumi-language-yaml from $PATH" on every command of a YAML project).
YAML_ENTRY="$CACHE/pulumi-language-yaml-v$PULUMI_YAML_VERSION"

build_language_yaml() {
  local tmp="$1" metrics="$2"
  timed_build "$TOOLCHAIN_SRC/pulumi-language-yaml" "$tmp/bin/pulumi-language-yaml" "$metrics" -- \
    -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=v$PULUMI_YAML_VERSION" .
}

ensure_language_yaml() {
  local ver="$PULUMI_YAML_VERSION" wrap="$TOOLCHAIN_SRC/pulumi-language-yaml"
  local dest_dir="$PULUMI_HOME/plugins/language-yaml-v$ver" fp src="" sys
  STEP="check language host yaml v$ver"
  fp="$(fingerprint "$wrap/go.mod" "$wrap/go.sum" "$wrap/main.go")"
  if [[ -n "$PULUMI_BIN" && -x "$(dirname "$PULUMI_BIN")/pulumi-language-yaml" ]]; then
    say "language host yaml: bundled with $PULUMI_BIN; nothing to build"
    return
  fi
  if sys="$(find_outside_cache pulumi-language-yaml)"; then
    say "language host yaml: using the installed $sys; nothing to build"
    return
  fi
  if [[ -x "$dest_dir/pulumi-language-yaml" && ! -e "$dest_dir.partial" ]]; then
    if [[ ! -f "$dest_dir/.postgres-apps-fp" ]] || [[ "$(cat "$dest_dir/.postgres-apps-fp")" == "$fp" ]]; then
      say "language host yaml v$ver: installed ($dest_dir)"
      return
    fi
  fi
  if cache_ok "$YAML_ENTRY" "$fp" pulumi-language-yaml; then
    say "language host yaml v$ver: cached ($YAML_ENTRY/bin)"
  elif [[ $CHECK == 1 ]]; then
    MISSING+=("language host yaml v$ver (not next to pulumi, not on PATH, not in $PULUMI_HOME/plugins or $YAML_ENTRY)")
    return
  else
    local tmp
    tmp="$(new_tmp language-yaml)"
    mkdir -p "$tmp/bin"
    build_language_yaml "$tmp" "$tmp/build-metrics.txt"
    commit_entry "$tmp" "$YAML_ENTRY" "$fp"
  fi
  src="$YAML_ENTRY/bin/pulumi-language-yaml"
  if [[ $CHECK == 1 ]]; then
    MISSING+=("language host yaml v$ver is available ($src) but not installed in $PULUMI_HOME/plugins")
    return
  fi
  # `pulumi plugin install language yaml` refuses ("bundled with Pulumi"): the plugin cache's own
  # layout (<kind>-<name>-v<version>/pulumi-<kind>-<name>) is written directly, then renamed into place.
  STEP="install language host yaml v$ver into $dest_dir"
  rm -rf "$dest_dir.tmp"
  mkdir -p "$dest_dir.tmp"
  install -m 0755 "$src" "$dest_dir.tmp/pulumi-language-yaml"
  echo "$fp" >"$dest_dir.tmp/.postgres-apps-fp"
  rm -rf "$dest_dir"
  mv "$dest_dir.tmp" "$dest_dir"
  say "language host yaml v$ver: installed into $dest_dir"
}

# ---------------------------------------------------------------- main
open_log
if [[ $CHECK == 0 ]]; then
  # One build at a time per cache (other clones, CI and make targets may run this concurrently).
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.pulumi-toolchain.lock"
  if ! flock -n 9; then
    say "waiting for another toolchain.sh run to finish (lock $CACHE/.pulumi-toolchain.lock)"
    flock 9
  fi
  # Under the lock no other run is building: what is left of an interrupted build can go.
  rm -rf "$CACHE"/.build-pulumi-* "$CACHE"/.build-kubernetes-* "$CACHE"/.build-random-* \
    "$CACHE"/.build-postgresql-* "$CACHE"/.build-language-yaml-*
fi
if ! command -v go >/dev/null && [[ $CHECK == 0 ]]; then
  # Only needed when something must be built; checked lazily below by the go calls themselves.
  say "warning: no go on PATH; only already installed or cached pieces can be used"
fi

ensure_cli
ensure_plugin kubernetes "$PULUMI_KUBERNETES_VERSION" build_kubernetes
ensure_plugin random "$PULUMI_RANDOM_VERSION" build_random
ensure_plugin postgresql "$PULUMI_POSTGRESQL_VERSION" build_postgresql
ensure_language_yaml

if ((${#MISSING[@]} > 0)); then
  echo "toolchain: missing:" >&2
  printf '  - %s\n' "${MISSING[@]}" >&2
  echo "toolchain: run localenv/toolchain.sh (without --check) to build/install them" >&2
  exit 1
fi
say "ready: $PULUMI_BIN; plugins in $PULUMI_HOME/plugins (log: $LOG)"

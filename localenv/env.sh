# shellcheck shell=bash
# Environment for this clone: `source localenv/env.sh` (from any directory; safe under `set -euo pipefail`).
#  - POSTGRES_APPS_ROOT: the repository root (computed from this file's path);
#  - the pinned versions (localenv/versions.env);
#  - PATH: the cached, locally built Pulumi CLI (only if it was built there) and <repo>/.venv/bin;
#  - the Pulumi state of the clone under <repo>/.state: PULUMI_HOME (plugins), a local file backend,
#    a generated passphrase file (mode 600);
#  - no plugin downloads, no update checks;
#  - KUBECONFIG of the local cluster, if it exists and KUBECONFIG is not set already.

# Repository root from this file's own path (works when sourced from any cwd, bash or zsh).
if [ -n "${BASH_SOURCE[0]:-}" ]; then
  _pa_env_file="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  # shellcheck disable=SC2296 # zsh-only expansion
  _pa_env_file="${(%):-%x}"
else
  _pa_env_file="$0"
fi
POSTGRES_APPS_ROOT="$(cd "$(dirname "$_pa_env_file")/.." && pwd)"
export POSTGRES_APPS_ROOT
unset _pa_env_file

set -a
# shellcheck source=localenv/versions.env disable=SC1091
. "$POSTGRES_APPS_ROOT/localenv/versions.env"
set +a

POSTGRES_APPS_CACHE_DIR="${POSTGRES_APPS_CACHE:-${HOME:-/root}/.cache/postgres-apps}"
export POSTGRES_APPS_CACHE_DIR

_pa_path_prepend() {
  case ":${PATH:-}:" in
    *":$1:"*) ;;
    *) PATH="$1${PATH:+:$PATH}" ;;
  esac
}
# Cached toolchain (only if built there: otherwise an installed `pulumi` stays first).
if [ -f "$POSTGRES_APPS_CACHE_DIR/pulumi-v${PULUMI_VERSION}/.complete" ]; then
  _pa_path_prepend "$POSTGRES_APPS_CACHE_DIR/pulumi-v${PULUMI_VERSION}/bin"
fi
if [ -d "$POSTGRES_APPS_ROOT/.venv/bin" ]; then
  _pa_path_prepend "$POSTGRES_APPS_ROOT/.venv/bin"
fi
export PATH
unset -f _pa_path_prepend

_pa_state="$POSTGRES_APPS_ROOT/.state"
mkdir -p "$_pa_state/pulumi-home" "$_pa_state/pulumi-backend"
export PULUMI_HOME="$_pa_state/pulumi-home"
# `metadata=skip`: the file backend (gocloud fileblob) otherwise writes a `<file>.attrs` sidecar
# next to every checkpoint with a plain create+write, not a rename; a CLI killed between the two
# leaves it empty and every later command fails with `failed to load checkpoint: EOF`
# (docs/reliability.md). The checkpoint itself is written atomically (temp file + rename).
export PULUMI_BACKEND_URL="file://$_pa_state/pulumi-backend?metadata=skip"

# A random passphrase for the local backend's secrets, generated once per clone (mode 600).
if [ ! -s "$_pa_state/pulumi-passphrase" ]; then
  (
    umask 077
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$_pa_state/pulumi-passphrase.tmp"
    mv "$_pa_state/pulumi-passphrase.tmp" "$_pa_state/pulumi-passphrase"
  )
fi
chmod 600 "$_pa_state/pulumi-passphrase"
export PULUMI_CONFIG_PASSPHRASE_FILE="$_pa_state/pulumi-passphrase"

export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_SKIP_UPDATE_CHECK=true
# The Python interpreter used by the language host (program runs, dynamic providers, policy packs)
# when Pulumi.yaml names no virtualenv.
if [ -x "$POSTGRES_APPS_ROOT/.venv/bin/python" ]; then
  export PULUMI_PYTHON_CMD="$POSTGRES_APPS_ROOT/.venv/bin/python"
fi

if [ -z "${KUBECONFIG:-}" ] && [ -f "$_pa_state/kube/admin.kubeconfig" ]; then
  export KUBECONFIG="$_pa_state/kube/admin.kubeconfig"
fi
unset _pa_state

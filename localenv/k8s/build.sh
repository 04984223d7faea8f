#!/usr/bin/env bash
# Build the local-cluster binaries from their Go modules, cached outside the repo by version:
#   $CACHE/kubernetes-v$KUBERNETES_VERSION/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
#   $CACHE/kine-v$KINE_VERSION/bin/kine
#   $CACHE/coredns-v$COREDNS_VERSION/bin/coredns
# with CACHE=${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}. Each set is built into a temporary
# directory next to its final place and renamed into place only when complete, so an interrupted
# build leaves nothing that looks finished. A second run finds the directories and builds nothing.
#
# Usage: localenv/k8s/build.sh [all|kubernetes|kine|coredns]   (default: all)
#        localenv/k8s/build.sh --print-dirs                    (print the bin directories, build nothing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../versions.env
source "$repo/localenv/versions.env"

cache="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
k8s_dir="$cache/kubernetes-v$KUBERNETES_VERSION"
kine_dir="$cache/kine-v$KINE_VERSION"
coredns_dir="$cache/coredns-v$COREDNS_VERSION"
k8s_mains=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

tmp_dirs=()
cleanup() { [[ ${#tmp_dirs[@]} -eq 0 ]] || rm -rf "${tmp_dirs[@]}"; }
trap cleanup EXIT

log() { printf '[k8s/build] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

command -v go >/dev/null || die "go not found on PATH (expected /usr/local/go/bin/go)"
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
# Never switch toolchains behind our back (the wrapper module asks for go 1.24.0, the local go is newer).
export GOTOOLCHAIN=local

# The wrapper module must pin the same release as versions.env.
check_wrapper_version() {
  local pinned
  pinned="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2} $1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/go.mod")"
  [[ "$pinned" == "v$KUBERNETES_VERSION" ]] ||
    die "localenv/k8s/go.mod requires k8s.io/kubernetes $pinned but versions.env says v$KUBERNETES_VERSION; update go.mod (replace lines too) and run 'go mod tidy' there"
}

# Finish an atomic build: $1 = temp dir (complete), $2 = final dir.
promote() {
  local tmp="$1" final="$2"
  rm -rf "$final.old"
  [[ -e "$final" ]] && mv "$final" "$final.old"
  mv "$tmp" "$final"
  rm -rf "$final.old"
}

build_kubernetes() {
  if [[ -x "$k8s_dir/bin/kube-apiserver" && -f "$k8s_dir/BUILD-INFO" ]]; then
    log "kubernetes v$KUBERNETES_VERSION: cached in $k8s_dir"
    return 0
  fi
  check_wrapper_version
  mkdir -p "$cache"
  local tmp commit date major minor ldflags pkgs=()
  tmp="$(mktemp -d "$cache/.kubernetes-v$KUBERNETES_VERSION.XXXXXX")"
  tmp_dirs+=("$tmp")
  commit="$(cd "$here" && go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" 2>/dev/null |
    sed -n 's/.*"Hash": "\([0-9a-f]*\)".*/\1/p' | head -n1)" || commit=""
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  major="${KUBERNETES_VERSION%%.*}"
  minor="${KUBERNETES_VERSION#*.}"
  minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=v$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
    # The proxy does not always record the release commit (.Origin); leave it empty then.
    [[ -z "$commit" ]] || ldflags+=" -X $p.gitCommit=$commit"
  done
  for m in "${k8s_mains[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$m"); done
  log "kubernetes v$KUBERNETES_VERSION: building ${k8s_mains[*]} (one go build; ~20-40 min cold on 2 cores)"
  mkdir -p "$tmp/bin"
  (cd "$here" && go build -ldflags "-s -w$ldflags" -o "$tmp/bin/" "${pkgs[@]}")
  for m in "${k8s_mains[@]}"; do [[ -x "$tmp/bin/$m" ]] || die "kubernetes build did not produce $m"; done
  "$tmp/bin/kube-apiserver" --version | grep -qx "Kubernetes v$KUBERNETES_VERSION" ||
    die "kube-apiserver reports '$("$tmp/bin/kube-apiserver" --version)', expected v$KUBERNETES_VERSION"
  printf 'kubernetes v%s commit %s built %s with %s\n' "$KUBERNETES_VERSION" "${commit:-unknown}" "$date" "$(go version)" >"$tmp/BUILD-INFO"
  chmod 755 "$tmp"
  promote "$tmp" "$k8s_dir"
  log "kubernetes v$KUBERNETES_VERSION: installed in $k8s_dir/bin"
}

# go install of a module without replace directives; $1 name, $2 module@version, $3 final dir, $4 version ldflags.
go_install_module() {
  local name="$1" modver="$2" final="$3" ldflags="$4" tmp
  if [[ -x "$final/bin/$name" ]]; then
    log "$name: cached in $final"
    return 0
  fi
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.$name.XXXXXX")"
  tmp_dirs+=("$tmp")
  log "$name: building $modver"
  mkdir -p "$tmp/bin"
  (cd "$tmp" && GOBIN="$tmp/bin" go install -ldflags "-s -w $ldflags" "$modver")
  [[ -x "$tmp/bin/$name" ]] || die "$name build did not produce bin/$name"
  printf '%s built %s with %s\n' "$modver" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(go version)" >"$tmp/BUILD-INFO"
  chmod 755 "$tmp"
  promote "$tmp" "$final"
  log "$name: installed in $final/bin"
}

build_kine() {
  go_install_module kine "github.com/k3s-io/kine@v$KINE_VERSION" "$kine_dir" \
    "-X github.com/k3s-io/kine/pkg/version.Version=v$KINE_VERSION"
}

build_coredns() {
  go_install_module coredns "github.com/coredns/coredns@v$COREDNS_VERSION" "$coredns_dir" ""
}

# One build at a time per cache (the cluster script and other helpers may call this concurrently);
# a second caller waits, then finds the result cached.
if [[ "${1:-all}" != --print-dirs ]]; then
  mkdir -p "$cache"
  exec 9>"$cache/.build.lock"
  if ! flock -n 9; then
    log "another build holds $cache/.build.lock; waiting"
    flock 9
  fi
fi

case "${1:-all}" in
  --print-dirs)
    printf '%s\n' "$k8s_dir/bin" "$kine_dir/bin" "$coredns_dir/bin"
    ;;
  all)
    build_kine
    build_coredns
    build_kubernetes
    ;;
  kubernetes) build_kubernetes ;;
  kine) build_kine ;;
  coredns) build_coredns ;;
  *) die "usage: $0 [all|kubernetes|kine|coredns|--print-dirs]" ;;
esac

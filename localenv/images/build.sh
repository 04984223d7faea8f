#!/usr/bin/env bash
# Build the local stack's OCI images without a registry and import them into the node's containerd.
#
#   localenv/images/build.sh [build|import|all|names] [KEY...]   (default: all, every image)
#
# build  : build every image that is not cached yet. Cache: ${POSTGRES_APPS_CACHE:-~/.cache/postgres-apps}/images/
#          <short-name>-<hash>.oci.tar, the hash covering this script, versions.env and the image's own inputs.
# import : import the cached archives into containerd (namespace k8s.io) at $CONTAINERD_ADDRESS
#          (default <repo>/.state/node/containerd/containerd.sock), skipping images already present.
# names  : print the fully qualified image names (one per line, "key=name").
#
# Images (fully qualified, never :latest):
#   pause       docker.io/postgres-apps/pause:1.0              static C program, the pod sandbox image
#   coredns     docker.io/postgres-apps/coredns:<COREDNS_VERSION>  the static CoreDNS binary built by localenv/k8s/build.sh
#   psql-client docker.io/postgres-apps/psql-client:15-bookworm Debian bookworm + postgresql-client-15 + netbase (getent), uid 70
#   postgresql  docker.io/postgres-apps/postgresql:15-bookworm  Debian bookworm + postgresql-15, entrypoint initdb + postgres, uid 999

# mmdebstrap hooks are single-quoted on purpose: "$1" is the chroot, expanded by mmdebstrap.
# shellcheck disable=SC2016
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=/dev/null
. "$REPO/localenv/versions.env"
CACHE="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
IMG_CACHE="$CACHE/images"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-$REPO/.state/node/containerd/containerd.sock}"
# Same rule as localenv/node/node.sh for deep clones.
if ((${#CONTAINERD_ADDRESS} > 95)); then
  CONTAINERD_ADDRESS="/run/postgres-apps-$(printf '%s' "$REPO" | sha256sum | cut -c1-12)/containerd.sock"
fi
COREDNS_BIN="${COREDNS_BIN:-$CACHE/coredns-v$COREDNS_VERSION/bin/coredns}"
DEBIAN_MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)

PAUSE_IMAGE="docker.io/postgres-apps/pause:1.0"
COREDNS_IMAGE="docker.io/postgres-apps/coredns:$COREDNS_VERSION"
PSQL_CLIENT_IMAGE="docker.io/postgres-apps/psql-client:15-bookworm"
POSTGRESQL_IMAGE="docker.io/postgres-apps/postgresql:15-bookworm"
ALL_KEYS=(pause coredns psql-client postgresql)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

image_name() {
  case "$1" in
    pause) echo "$PAUSE_IMAGE" ;;
    coredns) echo "$COREDNS_IMAGE" ;;
    psql-client) echo "$PSQL_CLIENT_IMAGE" ;;
    postgresql) echo "$POSTGRESQL_IMAGE" ;;
    *) die "unknown image $1" ;;
  esac
}

need() {
  local missing=()
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages for: ${missing[*]}"
  local pkgs=(umoci mmdebstrap gcc libc6-dev containerd)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
}

# Content hash of everything one image is made from: the functions that build it (so editing one image's
# recipe rebuilds only that image), its name, the Debian suites, extra input files (e.g. the CoreDNS binary).
input_hash() {
  local key="$1"
  shift
  {
    echo "$key $(image_name "$key")"
    printf '%s\n' "${DEBIAN_MIRRORS[@]}"
    declare -f "build_${key//-/_}" pack_rootfs mmdebstrap_rootfs
    local f
    for f in "$@"; do sha256sum "$f"; done
  } | sha256sum | cut -c1-16
}

archive_path() { # key [extra inputs...]
  local key="$1"
  shift
  echo "$IMG_CACHE/$key-$(input_hash "$key" "$@").oci.tar"
}

# pack_rootfs KEY ROOTFS_TAR OUT  then umoci config args (passed through)
pack_rootfs() {
  local key="$1" rootfs_tar="$2" out="$3"
  shift 3
  local name tag work
  name="$(image_name "$key")"
  tag="${name##*:}"
  work="$(mktemp -d "$IMG_CACHE/.pack-$key.XXXXXX")"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$tag"
  umoci raw add-layer --image "$work/oci:$tag" "$rootfs_tar"
  umoci config --image "$work/oci:$tag" --config.user "$IMAGE_USER" "$@" \
    --author "postgres-apps localenv/images/build.sh" --history.created_by "localenv/images/build.sh $key"
  umoci gc --layout "$work/oci"
  # ref.name = "<tag>": import with --base-name <repository> to get the fully qualified name.
  tar -C "$work/oci" -cf "$out.tmp" .
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

mmdebstrap_rootfs() { # OUT_TAR  mmdebstrap args...
  local out="$1"
  shift
  local mirrors=""
  local m
  for m in "${DEBIAN_MIRRORS[@]}"; do mirrors+="$m"$'\n'; done
  printf '%s' "$mirrors" | mmdebstrap --quiet --variant=essential --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$@" bookworm "$out" -
}

build_pause() {
  local out="$1" work
  work="$(mktemp -d "$IMG_CACHE/.pause.XXXXXX")"
  cat >"$work/pause.c" <<'C'
/* The pod sandbox process: hold the namespaces, reap zombies, exit on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int sig) { (void)sig; _exit(0); }
static void on_child(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) { puts("postgres-apps pause 1.0"); return 0; }
  struct sigaction term = {0}, child = {0};
  term.sa_handler = on_term;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGINT, &term, NULL) || sigaction(SIGTERM, &term, NULL) || sigaction(SIGCHLD, &child, NULL)) return 1;
  for (;;) pause();
}
C
  gcc -static -Os -s -o "$work/pause" "$work/pause.c"
  mkdir -p "$work/rootfs"
  install -m 0755 "$work/pause" "$work/rootfs/pause"
  tar --numeric-owner --owner=0 --group=0 -C "$work/rootfs" -cf "$work/rootfs.tar" .
  IMAGE_USER=65535:65535 pack_rootfs pause "$work/rootfs.tar" "$out" --config.entrypoint=/pause
  rm -rf "$work"
}

build_coredns() {
  local out="$1" work
  [[ -x "$COREDNS_BIN" ]] || die "CoreDNS binary $COREDNS_BIN missing: run localenv/k8s/build.sh first"
  work="$(mktemp -d "$IMG_CACHE/.coredns.XXXXXX")"
  mkdir -p "$work/rootfs/etc/coredns" "$work/rootfs/tmp"
  chmod 1777 "$work/rootfs/tmp"
  install -m 0755 "$COREDNS_BIN" "$work/rootfs/coredns"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/rootfs/etc/group"
  tar --numeric-owner --owner=0 --group=0 -C "$work/rootfs" -cf "$work/rootfs.tar" .
  IMAGE_USER=0:0 pack_rootfs coredns "$work/rootfs.tar" "$out" \
    --config.entrypoint=/coredns --config.cmd=-conf --config.cmd=/etc/coredns/Corefile
  rm -rf "$work"
}

build_psql_client() {
  local out="$1" work
  work="$(mktemp -d "$IMG_CACHE/.psql-client.XXXXXX")"
  # Users for the probe's numeric uids (70 = the alpine images' postgres, 999 = the Debian/official one):
  # psql and getent look the uid up; HOME=/tmp so nothing is written outside /tmp (read-only root FS).
  mmdebstrap_rootfs "$work/rootfs.tar" \
    --include=postgresql-client-15,netbase,ca-certificates \
    --customize-hook='printf "pgclient:x:70:70:psql client:/tmp:/usr/sbin/nologin\npostgres:x:999:999:PostgreSQL:/tmp:/usr/sbin/nologin\n" >>"$1/etc/passwd"' \
    --customize-hook='printf "pgclient:x:70:\npostgres:x:999:\n" >>"$1/etc/group"'
  # PATH: the client's own bin first, as in the official postgres images (where psql is the binary):
  # Debian's /usr/bin/psql is pg_wrapper, a Perl script that costs ~25 ms of CPU per psql start,
  # 40 % of a probe's time on 2 cores (8 apps, 4 lanes: 2.57 s → 1.57 s, 2026-12-03).
  IMAGE_USER=70:70 pack_rootfs psql-client "$work/rootfs.tar" "$out" \
    --config.env=HOME=/tmp --config.env=PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin \
    --config.workingdir=/tmp --config.cmd=psql --config.cmd=--version
  rm -rf "$work"
}

build_postgresql() {
  local out="$1" work
  work="$(mktemp -d "$IMG_CACHE/.postgresql.XXXXXX")"
  cat >"$work/pg-entrypoint" <<'SH'
#!/bin/sh
# PostgreSQL 15 entrypoint: initdb on an empty data dir (superuser "postgres", password from
# POSTGRES_PASSWORD, scram-sha-256 everywhere), then run postgres in the foreground on 0.0.0.0:5432.
set -eu
BIN=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "pg-entrypoint: $PGDATA is empty and POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=scram-sha-256 \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  {
    echo "# postgres-apps image: password logins from anywhere the pod network lets through"
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >>"$PGDATA/pg_hba.conf"
  echo "pg-entrypoint: initialised $PGDATA" >&2
fi
unset POSTGRES_PASSWORD
# The socket directory is an emptyDir in the pod; /tmp when run without one (read-only root FS).
SOCKDIR=/var/run/postgresql
[ -d "$SOCKDIR" ] && [ -w "$SOCKDIR" ] || SOCKDIR=/tmp
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c port=5432 \
  -c unix_socket_directories="$SOCKDIR" -c password_encryption=scram-sha-256 "$@"
SH
  # postgres as uid/gid 999 (created before postgresql-common's postinst, which keeps an existing user);
  # the package's default cluster "main" is removed: the entrypoint makes its own in $PGDATA.
  mmdebstrap_rootfs "$work/rootfs.tar" \
    --include=postgresql-15 \
    --essential-hook='echo "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh" >>"$1/etc/passwd"; echo "postgres:x:999:" >>"$1/etc/group"; if [ -f "$1/etc/shadow" ]; then echo "postgres:*:19000:0:99999:7:::" >>"$1/etc/shadow"; fi' \
    --customize-hook='rm -rf "$1"/var/lib/postgresql/15/main "$1"/etc/postgresql/15/main' \
    --customize-hook="install -m 0755 '$work/pg-entrypoint' \"\$1/usr/local/bin/pg-entrypoint\"" \
    --customize-hook='mkdir -p "$1"/var/lib/postgresql/data && chown -R 999:999 "$1"/var/lib/postgresql'
  IMAGE_USER=999:999 pack_rootfs postgresql "$work/rootfs.tar" "$out" \
    --config.env=PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin \
    --config.env=PGDATA=/var/lib/postgresql/data/pgdata \
    --config.env=HOME=/var/lib/postgresql \
    --config.entrypoint=/usr/local/bin/pg-entrypoint --config.stopsignal=SIGINT \
    --config.exposedports=5432/tcp --config.volume=/var/lib/postgresql/data
  rm -rf "$work"
}

archive_for() {
  case "$1" in
    coredns) archive_path coredns "$COREDNS_BIN" ;;
    *) archive_path "$1" ;;
  esac
}

build_one() {
  local key="$1" out start
  out="$(archive_for "$key")"
  if [[ -s "$out" ]]; then
    log "$key: cached $(basename "$out") ($(du -h "$out" | cut -f1))"
    return 0
  fi
  start=$SECONDS
  log "$key: building $(image_name "$key")"
  case "$key" in
    pause) build_pause "$out" ;;
    coredns) build_coredns "$out" ;;
    psql-client) build_psql_client "$out" ;;
    postgresql) build_postgresql "$out" ;;
  esac
  # Older archives of the same image are superseded.
  find "$IMG_CACHE" -maxdepth 1 -name "$key-*.oci.tar" ! -path "$out" -delete
  log "$key: built in $((SECONDS - start)) s, $(du -h "$out" | cut -f1)"
}

ctr_() { ctr --address "$CONTAINERD_ADDRESS" --namespace k8s.io "$@"; }

import_one() {
  local key="$1" name out start
  name="$(image_name "$key")"
  out="$(archive_for "$key")"
  [[ -s "$out" ]] || die "$key: no archive $out (run build first)"
  # The archive's digest as a label: re-import when the cache holds a newer build.
  local want
  want="$(basename "$out" .oci.tar)"
  if ctr_ images ls "name==$name" 2>/dev/null | grep -q "postgres-apps.build=$want"; then
    log "$key: $name already in containerd"
    return 0
  fi
  start=$SECONDS
  ctr_ images import --base-name "${name%:*}" "$out" >/dev/null
  ctr_ images label "$name" "postgres-apps.build=$want" >/dev/null
  log "$key: imported $name in $((SECONDS - start)) s"
}

cmd="${1:-all}"
shift || true
KEYS=("$@")
((${#KEYS[@]})) || KEYS=("${ALL_KEYS[@]}")
case "$cmd" in
  names)
    for k in "${ALL_KEYS[@]}"; do echo "$k=$(image_name "$k")"; done
    exit 0
    ;;
  build | import | all) ;;
  *) die "usage: $0 [build|import|all|names]" ;;
esac

mkdir -p "$IMG_CACHE"
exec 9>"$IMG_CACHE/.lock"
flock 9
if [[ "$cmd" == build || "$cmd" == all ]]; then
  need umoci mmdebstrap gcc
  for k in "${KEYS[@]}"; do build_one "$k"; done
fi
if [[ "$cmd" == import || "$cmd" == all ]]; then
  [[ -S "$CONTAINERD_ADDRESS" ]] || die "containerd socket $CONTAINERD_ADDRESS missing (start the node first: localenv/node/node.sh up)"
  for k in "${KEYS[@]}"; do import_one "$k"; done
fi

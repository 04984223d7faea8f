#!/usr/bin/env bash
# A PostgreSQL 15 on this machine, shaped like the Bitnami chart's deployment as the program sees it,
# for the engine tier while pods cannot run yet:
#   - Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin), run as system user `pgapps`, data under
#     <repo>/.state/postgres-host/, listening on 127.0.0.1:15432 (the program's admin endpoint) and on
#     the cluster's host address (localenv/cluster.sh host-ip) :15432 for in-cluster clients;
#     password authentication (scram-sha-256) on TCP, the `postgres` password generated once.
#   - in the cluster: namespace `data`, Secret `postgres-postgresql` (key `postgres-password`),
#     a selector-less Service `postgres-postgresql` port 5432 and an EndpointSlice to the host server.
#
# Usage: localenv/postgres-host.sh up [--no-cluster] | down [--purge] | status | password
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

pg_bin="${POSTGRES_APPS_PG_BIN:-/usr/lib/postgresql/15/bin}"
pg_user="${POSTGRES_APPS_PG_USER:-pgapps}"
port="${POSTGRES_APPS_PG_PORT:-15432}"
base="$repo/.state/postgres-host"
data="$base/data"
run_dir="$base/run"
pw_file="$base/postgres-password"
log_file="$repo/.state/logs/postgres-host.log"
admin_kubeconfig="$repo/.state/kube/admin.kubeconfig"
namespace=data
name=postgres-postgresql

log() { printf '[postgres-host] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

as_pg() { runuser -u "$pg_user" -- "$@"; }

kubectl_bin() {
  local k
  k="$(sed -n 's/^KUBECTL=//p' "$repo/.state/kube/cluster.env" 2>/dev/null || true)"
  [[ -x "$k" ]] && { echo "$k"; return; }
  command -v kubectl || die "kubectl not found (run localenv/cluster.sh up first)"
}
kc() { "$(kubectl_bin)" --kubeconfig "$admin_kubeconfig" "$@"; }

ensure_user() {
  id -u "$pg_user" >/dev/null 2>&1 && return 0
  [[ $EUID -eq 0 ]] || die "need root to create system user $pg_user"
  log "creating system user $pg_user"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$pg_user"
}

is_running() { [[ -s "$data/postmaster.pid" ]] && as_pg "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

host_ip() { "$here/cluster.sh" host-ip; }

ensure_initdb() {
  [[ -s "$data/PG_VERSION" ]] && return 0
  mkdir -p "$base" "$(dirname "$log_file")"
  chmod 755 "$repo/.state" "$base"
  if [[ ! -s "$pw_file" ]]; then
    (umask 077 && openssl rand -base64 24 | tr -d '/+=\n' >"$pw_file")
  fi
  rm -rf "$data"
  install -d -o "$pg_user" -g "$pg_user" -m 700 "$data" "$run_dir"
  local tmp_pw
  tmp_pw="$(mktemp)"
  cat "$pw_file" >"$tmp_pw"
  chown "$pg_user" "$tmp_pw"
  log "initdb in $data"
  if ! as_pg "$pg_bin/initdb" -D "$data" -U postgres --pwfile="$tmp_pw" --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >>"$log_file" 2>&1; then
    rm -f "$tmp_pw"
    tail -n 20 "$log_file" >&2
    die "initdb failed"
  fi
  rm -f "$tmp_pw"
}

write_conf() {
  local ip="$1"
  # Rewritten at every start: the host address may change with POSTGRES_APPS_HOST_IP.
  cat >"$data/postgresql.auto.conf" <<EOF
# Written by localenv/postgres-host.sh at every start.
listen_addresses = '127.0.0.1,$ip'
port = $port
unix_socket_directories = '$run_dir'
password_encryption = 'scram-sha-256'
max_connections = 200
shared_buffers = '128MB'
fsync = on
logging_collector = off
log_connections = off
EOF
  cat >"$data/pg_hba.conf" <<EOF
# Written by localenv/postgres-host.sh. TCP always needs a password.
local   all  all                 peer map=local
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  $ip/32         scram-sha-256
host    all  all  10.244.0.0/16  scram-sha-256
EOF
  # Root and pgapps may use the socket as `postgres` (administration by this script only).
  printf 'local root postgres\nlocal %s postgres\n' "$pg_user" >"$data/pg_ident.conf"
  chown "$pg_user:$pg_user" "$data/postgresql.auto.conf" "$data/pg_hba.conf" "$data/pg_ident.conf"
  chmod 600 "$data/postgresql.auto.conf" "$data/pg_hba.conf" "$data/pg_ident.conf"
}

cluster_up() { [[ -s "$admin_kubeconfig" && "$(kc get --raw /readyz 2>/dev/null)" == ok ]]; }

# The in-cluster PostgreSQL (localenv/node/postgres.sh) owns the same names with a selector; this
# script is its stand-in, never both at once.
in_cluster_pg_owns_service() {
  local selector
  selector="$(kc -n "$namespace" get service "$name" -o jsonpath='{.spec.selector}' 2>/dev/null || true)"
  [[ -n "$selector" ]]
}

apply_cluster_objects() {
  local ip="$1" pw
  pw="$(cat "$pw_file")"
  cluster_up || die "cluster API not ready at $admin_kubeconfig (run localenv/cluster.sh up, or use --no-cluster)"
  if in_cluster_pg_owns_service; then
    die "Service $namespace/$name has a selector: the in-cluster PostgreSQL (localenv/node/postgres.sh) owns it; stop that first (localenv/node/postgres.sh down) or use --no-cluster"
  fi
  # Server-side apply (no last-applied annotation carrying the password), as Helm would.
  kc apply --server-side --force-conflicts --field-manager=postgres-apps-localenv -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
---
apiVersion: v1
kind: Secret
metadata:
  name: $name
  namespace: $namespace
  labels:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/managed-by: postgres-apps-localenv
type: Opaque
stringData:
  postgres-password: "$pw"
---
apiVersion: v1
kind: Service
metadata:
  name: $name
  namespace: $namespace
  labels:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/managed-by: postgres-apps-localenv
spec:
  type: ClusterIP
  ports:
    - name: tcp-postgresql
      port: 5432
      targetPort: $port
      protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-host
  namespace: $namespace
  labels:
    kubernetes.io/service-name: $name
    endpointslice.kubernetes.io/managed-by: postgres-apps-localenv
addressType: IPv4
ports:
  - name: tcp-postgresql
    port: $port
    protocol: TCP
endpoints:
  - addresses: ["$ip"]
    conditions:
      ready: true
EOF
  log "cluster: namespace $namespace, Secret $name, Service $name:5432 -> EndpointSlice $ip:$port"
}

cmd_up() {
  local with_cluster=1
  [[ "${1:-}" == --no-cluster ]] && with_cluster=0
  [[ -x "$pg_bin/pg_ctl" ]] || die "PostgreSQL 15 not found in $pg_bin (apt-get install postgresql-15)"
  ensure_user
  local ip
  ip="$(host_ip)"
  ensure_initdb
  if is_running; then
    log "already running (pid $(head -n1 "$data/postmaster.pid"))"
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is already taken by another server (the in-cluster PostgreSQL's hostPort? localenv/node/postgres.sh status)"
  else
    write_conf "$ip"
    log "starting on 127.0.0.1:$port and $ip:$port (log $log_file)"
    touch "$log_file"
    chown "$pg_user" "$log_file"
    as_pg "$pg_bin/pg_ctl" -D "$data" -l "$log_file" -w -t 60 start >/dev/null ||
      {
        tail -n 30 "$log_file" >&2
        die "pg_ctl start failed"
      }
  fi
  PGPASSWORD="$(cat "$pw_file")" psql "host=127.0.0.1 port=$port user=postgres dbname=postgres connect_timeout=5" \
    -Atqc 'select 1' | grep -qx 1 || die "cannot log in as postgres on 127.0.0.1:$port with the stored password"
  ((with_cluster)) && apply_cluster_objects "$ip"
  log "ready: admin endpoint 127.0.0.1:$port user postgres (password in $pw_file and Secret $namespace/$name)"
}

cmd_down() {
  # Withdraw the in-cluster view of this server (only the selector-less objects this script made).
  if cluster_up && ! in_cluster_pg_owns_service; then
    kc -n "$namespace" delete endpointslice "$name-host" --ignore-not-found >/dev/null
    kc -n "$namespace" delete service "$name" --ignore-not-found >/dev/null
    log "cluster: removed Service and EndpointSlice $namespace/$name (Secret kept)"
  fi
  if is_running; then
    as_pg "$pg_bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    log "stopped"
  else
    log "not running"
  fi
  if [[ "${1:-}" == --purge ]]; then
    rm -rf "$base"
    log "purged $base"
  fi
}

cmd_status() {
  local rc=0
  if is_running; then
    echo "postgres-host            up    pid $(head -n1 "$data/postmaster.pid") 127.0.0.1:$port"
  else
    echo "postgres-host            down"
    rc=1
  fi
  if [[ -s "$admin_kubeconfig" ]] && kc -n "$namespace" get secret "$name" >/dev/null 2>&1; then
    echo "cluster objects          present (namespace $namespace: Secret/Service/EndpointSlice $name)"
  else
    echo "cluster objects          absent or cluster down"
  fi
  return "$rc"
}

case "${1:-}" in
  up)
    shift
    cmd_up "$@"
    ;;
  down)
    shift
    cmd_down "$@"
    ;;
  status) cmd_status ;;
  password) cat "$pw_file" ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac

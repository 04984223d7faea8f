#!/usr/bin/env bash
# Local single-machine Kubernetes control plane: kine (SQLite) + kube-apiserver + kube-controller-manager
# + kube-scheduler, all bound to loopback, state under <repo>/.state/. See docs/local-cluster.md.
# Every listener needs a credential: kine serves its etcd API over TLS and accepts only client
# certificates of its own CA (the API server's), the API server refuses anonymous requests.
#
# Usage: localenv/cluster.sh up | down [--purge] | status | logs [COMPONENT] [-f] | check | host-ip
#   up       build (cached) binaries, make certificates/kubeconfigs once, start what is not running,
#            wait for /readyz and `kubectl get ns`, then start the node (localenv/node/node.sh up) if
#            that script exists and POSTGRES_APPS_NODE is not 0. Idempotent; a component that runs
#            with other flags than this script gives it (an older checkout) is restarted.
#   down     stop the node (node.sh down) then every control-plane process (SIGTERM, SIGKILL after
#            a timeout); data stays for the next `up`. --purge also deletes cluster state and certs.
#   status   each component up/down (exit 1 if any is down).
#   logs     tail of every component log, or of one (-f follows).
#   check    acceptance check: /readyz, anonymous requests get 401, kine refuses a client without
#            its certificate, PodSecurity rejects a privileged Pod in a namespace that enforces
#            'restricted', ServiceAccount tokens are issued (TokenRequest + token controller).
#   host-ip  make sure the host address exists (bridge pgapps0) and print it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"

state="$repo/.state"
cluster_dir="$state/cluster"
pid_dir="$cluster_dir/pids"
log_dir="$state/logs"
kube_dir="$state/kube"
pki="$kube_dir/pki"
admin_kubeconfig="$kube_dir/admin.kubeconfig"
context_name="postgres-apps-local"

# Network layout (all on this machine).
# Ports can be moved (a second clone on the same machine, e.g. for a cold-start test beside a running cluster).
api_port="${POSTGRES_APPS_API_PORT:-6443}"
kine_addr="127.0.0.1:${POSTGRES_APPS_KINE_PORT:-2379}"
kcm_port="${POSTGRES_APPS_KCM_PORT:-10257}"
scheduler_port="${POSTGRES_APPS_SCHEDULER_PORT:-10259}"
service_cidr="10.96.0.0/16"
first_service_ip="10.96.0.1"
cluster_cidr="10.244.0.0/16"
cluster_domain="cluster.local"
# A host address that is not loopback, for what the API must publish (the `kubernetes` Service's
# endpoints, Endpoints to host services): the API rejects 127.0.0.0/8 there. It lives on a port-less
# bridge (this kernel has no dummy interfaces), so it is local to this machine and never routed out.
host_if="${POSTGRES_APPS_HOST_IF:-pgapps0}"
host_ip="${POSTGRES_APPS_HOST_IP:-10.250.0.1}"
node_name="${POSTGRES_APPS_NODE_NAME:-postgres-apps-node}"

cache="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
k8s_bin="$cache/kubernetes-v$KUBERNETES_VERSION/bin"
kine_bin="$cache/kine-v$KINE_VERSION/bin"
kubectl_bin="$k8s_bin/kubectl"

stop_timeout="${POSTGRES_APPS_STOP_TIMEOUT:-20}"
ready_timeout="${POSTGRES_APPS_READY_TIMEOUT:-120}"

# Start order; `down` stops in reverse.
components=(kine kube-apiserver apiserver-forward kube-controller-manager kube-scheduler)

log() { printf '[cluster %s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

kc() { "$kubectl_bin" --kubeconfig "$admin_kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------------
# Host address

ensure_host_ip() {
  if ! ip -4 addr show dev "$host_if" 2>/dev/null | grep -q "inet $host_ip/"; then
    [[ $EUID -eq 0 ]] || die "need root to create $host_if with $host_ip (or set POSTGRES_APPS_HOST_IP to an existing local address)"
    ip link show "$host_if" >/dev/null 2>&1 || ip link add "$host_if" type bridge
    ip addr add "$host_ip/32" dev "$host_if"
  fi
  ip link set "$host_if" up
  ip route get "$host_ip" | grep -q '^local ' || die "$host_ip on $host_if is not a local address"
}

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs (made once; `down --purge` removes them)

# issue NAME SUBJECT [SAN] [CA] : key + cert signed by CA (default: the cluster CA), clientAuth, plus
# serverAuth when SANs are given.
issue() {
  local name="$1" subj="$2" san="${3:-}" ca="${4:-ca}" ext
  [[ -s "$pki/$name.crt" && -s "$pki/$name.key" ]] && return 0
  ext="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$san" ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subj" \
    -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
  chmod 600 "$pki/$name.key"
}

# kubeconfig FILE USER CERTNAME
kubeconfig() {
  local file="$1" user="$2" cert="$3"
  # Kept unless the API port moved (POSTGRES_APPS_API_PORT).
  [[ -s "$file" ]] && grep -q "server: https://127.0.0.1:$api_port\$" "$file" && return 0
  local tmp="$file.tmp"
  rm -f "$tmp" "$file"
  "$kubectl_bin" config set-cluster "$context_name" --kubeconfig "$tmp" --server "https://127.0.0.1:$api_port" \
    --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null
  "$kubectl_bin" config set-credentials "$user" --kubeconfig "$tmp" \
    --client-certificate "$pki/$cert.crt" --client-key "$pki/$cert.key" --embed-certs >/dev/null
  "$kubectl_bin" config set-context "$context_name" --kubeconfig "$tmp" --cluster "$context_name" --user "$user" >/dev/null
  "$kubectl_bin" config use-context "$context_name" --kubeconfig "$tmp" >/dev/null
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}

ensure_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  local ca
  # The cluster CA, the front-proxy CA of the aggregation layer (request-header authentication), and
  # the CA of kine's etcd API: a CA of its own (as kubeadm's etcd/ca), so that no certificate of the
  # cluster CA (admin, kubelet, kube-proxy...) opens the datastore; only the API server's below.
  # Each is made when missing, so an older .state gains the ones it lacks.
  for ca in ca front-proxy-ca etcd-ca; do
    [[ -s "$pki/$ca.crt" ]] && continue
    log "creating $ca and certificates in $pki"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/$ca.key" -sha256 -days 3650 \
      -subj "/CN=postgres-apps-local-$ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$pki/$ca.crt" 2>/dev/null
    chmod 600 "$pki/$ca.key"
  done
  if [[ ! -s "$pki/sa.key" ]]; then
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    chmod 600 "$pki/sa.key"
  fi
  local svc_san="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$cluster_domain"
  issue apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:$first_service_ip,IP:$host_ip,DNS:localhost,$svc_san"
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  issue admin "/O=system:masters/CN=postgres-apps-admin"
  issue front-proxy-client "/CN=front-proxy-client" "" front-proxy-ca
  issue controller-manager "/CN=system:kube-controller-manager"
  issue scheduler "/CN=system:kube-scheduler"
  issue kube-proxy "/CN=system:kube-proxy"
  issue kubelet "/O=system:nodes/CN=system:node:$node_name"
  # The kubelet's serving certificate (the node helper may use it or let the kubelet self-sign).
  issue kubelet-server "/CN=$node_name" "IP:127.0.0.1,IP:$host_ip,DNS:localhost,DNS:$node_name"
  # kine's serving certificate and its only client, the API server.
  issue kine-server "/CN=kine" "IP:127.0.0.1,DNS:localhost" etcd-ca
  issue apiserver-etcd-client "/CN=kube-apiserver-etcd-client" "" etcd-ca
  # kubectl 'config' must exist before the kubeconfigs are written.
  kubeconfig "$admin_kubeconfig" postgres-apps-admin admin
  kubeconfig "$kube_dir/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$kube_dir/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$kube_dir/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  kubeconfig "$kube_dir/kubelet.kubeconfig" "system:node:$node_name" kubelet
  # Facts the node helper reads instead of hard-coding them.
  cat >"$kube_dir/cluster.env" <<EOF
# Written by localenv/cluster.sh; facts about the local control plane for other scripts.
NODE_NAME=$node_name
HOST_IP=$host_ip
HOST_IF=$host_if
API_SERVER=https://127.0.0.1:$api_port
KINE_ENDPOINT=https://$kine_addr
PKI_DIR=$pki
SERVICE_CIDR=$service_cidr
CLUSTER_CIDR=$cluster_cidr
CLUSTER_DNS=10.96.0.10
CLUSTER_DOMAIN=$cluster_domain
KUBECTL=$kubectl_bin
K8S_BIN=$k8s_bin
EOF
}

# ---------------------------------------------------------------------------------------------
# Processes

pid_of() {
  local f="$pid_dir/$1.pid" pid
  [[ -s "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  # The pid must still be our process (the pid file can outlive a reboot).
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(component_binary "$1")" || return 1
  printf '%s\n' "$pid"
}

is_running() { pid_of "$1" >/dev/null; }

# alive PID: exists and is not a zombie (PID 1 of this VM reaps orphans only after a second or so).
alive() {
  local st
  st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  st="${st##*) }"
  [[ "${st%% *}" != Z ]]
}

component_binary() {
  case "$1" in
    kine) echo "$kine_bin/kine" ;;
    apiserver-forward) echo "socat" ;;
    *) echo "$k8s_bin/$1" ;;
  esac
}

component_args() {
  case "$1" in
    kine)
      # Default endpoint: SQLite at ./db/state.db relative to the working directory. TLS with a
      # trusted CA makes kine require and verify client certificates (etcd's TLSInfo.ServerConfig:
      # RequireAndVerifyClientCert when TrustedCAFile is set; kine pkg/tls/config.go ServerConfig).
      echo --listen-address="$kine_addr" --metrics-bind-address=0 \
        --server-cert-file="$pki/kine-server.crt" --server-key-file="$pki/kine-server.key" \
        --trusted-ca-file="$pki/etcd-ca.crt"
      ;;
    kube-apiserver)
      echo --bind-address=127.0.0.1 --secure-port="$api_port" --advertise-address="$host_ip" \
        --etcd-servers="https://$kine_addr" --etcd-cafile="$pki/etcd-ca.crt" \
        --etcd-certfile="$pki/apiserver-etcd-client.crt" --etcd-keyfile="$pki/apiserver-etcd-client.key" \
        --anonymous-auth=false \
        --service-cluster-ip-range="$service_cidr" \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
        --service-account-issuer="https://kubernetes.default.svc.$cluster_domain" \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname \
        --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
        --authorization-mode=Node,RBAC \
        --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true \
        --profiling=false \
        --cert-dir="$cluster_dir/apiserver-certs"
      ;;
    apiserver-forward)
      # Pods reach the API through the `kubernetes` Service, whose endpoint is $host_ip:6443;
      # the API server itself listens on loopback only, so forward that one address to it.
      echo "TCP-LISTEN:$api_port,bind=$host_ip,reuseaddr,fork" "TCP:127.0.0.1:$api_port"
      ;;
    kube-controller-manager)
      local k="$kube_dir/controller-manager.kubeconfig"
      echo --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
        --bind-address=127.0.0.1 --secure-port="$kcm_port" --leader-elect=false \
        --cluster-cidr="$cluster_cidr" --allocate-node-cidrs=true --node-cidr-mask-size=24 \
        --service-cluster-ip-range="$service_cidr" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
        --use-service-account-credentials=true \
        --profiling=false
      ;;
    kube-scheduler)
      local k="$kube_dir/scheduler.kubeconfig"
      echo --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
        --bind-address=127.0.0.1 --secure-port="$scheduler_port" --leader-elect=false --profiling=false
      ;;
  esac
}

# component_cmdline COMPONENT: binary and flags it is started with, space-separated.
component_cmdline() {
  local bin
  bin="$(component_binary "$1")"
  [[ "$1" == apiserver-forward ]] && bin="$(command -v socat)"
  echo "$bin $(component_args "$1")"
}

# is_stale COMPONENT: running, but with other flags than this script gives it now (started by an
# older checkout, e.g. a kine without TLS); `up` restarts it, `status` reports it.
is_stale() {
  local pid
  pid="$(pid_of "$1")" || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" != "$(component_cmdline "$1") " ]]
}

# The address each component listens on.
component_listen() {
  case "$1" in
    kine) echo "$kine_addr" ;;
    kube-apiserver) echo "127.0.0.1:$api_port" ;;
    apiserver-forward) echo "$host_ip:$api_port" ;;
    kube-controller-manager) echo "127.0.0.1:$kcm_port" ;;
    kube-scheduler) echo "127.0.0.1:$scheduler_port" ;;
  esac
}

# listener ADDR: the `users:(...)` field of whatever listens on ADDR (empty if nothing).
listener() {
  ss -ltnpH "( sport = :${1##*:} )" 2>/dev/null | awk -v a="$1" '$4 == a {print $6}'
}

# listens_as COMPONENT: its own process (not another instance) holds its address.
listens_as() {
  local pid
  pid="$(pid_of "$1")" || return 1
  listener "$(component_listen "$1")" | grep -q "pid=$pid,"
}

# health URL of a component, empty when it has none (probed by other means).
component_health() {
  case "$1" in
    kube-controller-manager) echo "https://127.0.0.1:$kcm_port/healthz" ;;
    kube-scheduler) echo "https://127.0.0.1:$scheduler_port/healthz" ;;
    *) echo "" ;;
  esac
}

fail_component() {
  local c="$1" msg="$2"
  log "FAILED: $c: $msg"
  if [[ -s "$log_dir/$c.log" ]]; then
    log "last lines of $log_dir/$c.log:"
    tail -n 40 "$log_dir/$c.log" >&2
  fi
  exit 1
}

start_component() {
  local c="$1" bin pid
  if is_running "$c"; then
    log "$c: already running (pid $(pid_of "$c"))"
    return 0
  fi
  local addr holder
  addr="$(component_listen "$c")"
  holder="$(listener "$addr")"
  [[ -z "$holder" ]] || fail_component "$c" "$addr is already in use by $holder (another cluster? see POSTGRES_APPS_*_PORT)"
  bin="$(component_binary "$c")"
  [[ "$c" == apiserver-forward ]] && bin="$(command -v socat)"
  [[ -x "$bin" ]] || fail_component "$c" "binary $bin missing (run localenv/k8s/build.sh)"
  mkdir -p "$cluster_dir/$c"
  printf '==== %s cluster.sh: starting %s\n' "$(date -u +%FT%TZ)" "$c" >>"$log_dir/$c.log"
  # shellcheck disable=SC2046 # component_args prints one word per flag, none with spaces
  (cd "$cluster_dir/$c" && exec setsid "$bin" $(component_args "$c") </dev/null >>"$log_dir/$c.log" 2>&1) &
  pid=$!
  echo "$pid" >"$pid_dir/$c.pid"
  sleep 0.3
  kill -0 "$pid" 2>/dev/null || fail_component "$c" "exited right after start"
  log "$c: started (pid $pid, log $log_dir/$c.log)"
}

# wait_until COMPONENT DESCRIPTION COMMAND... : poll until COMMAND succeeds; fail if the process dies.
wait_until() {
  local c="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + ready_timeout))
  until "$@" >/dev/null 2>&1; do
    is_running "$c" || fail_component "$c" "process exited while waiting for $what"
    ((SECONDS < deadline)) || fail_component "$c" "not ready after ${ready_timeout}s ($what)"
    sleep 0.5
  done
}

tcp_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
api_ready() { [[ "$(kc get --raw /readyz 2>/dev/null)" == ok ]]; }
# The HTTP status of a request to the API server without credentials (401 since --anonymous-auth=false).
api_anonymous_status() { curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "https://127.0.0.1:$api_port/api"; }

# kine_health [CURL_ARGS...]: kine's gRPC health service (grpc.health.v1.Health/Check, registered by
# kine pkg/server/server.go Register) called with curl over HTTP/2: an empty request in gRPC's 5-byte
# framing; prints the reply body in hex, 00000000020801 is status SERVING. kine ends the TLS handshake
# of a client without a certificate of etcd-ca, so the reply is then empty.
kine_health() {
  printf '\0\0\0\0\0' | curl -s --max-time 3 --http2 --cacert "$pki/etcd-ca.crt" "$@" \
    -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
    "https://$kine_addr/grpc.health.v1.Health/Check" | od -An -tx1 | tr -d ' \n'
}
kine_healthy() {
  [[ "$(kine_health --cert "$pki/apiserver-etcd-client.crt" --key "$pki/apiserver-etcd-client.key")" == 00000000020801 ]]
}
# kine answers neither a client without a certificate nor one with a cluster-CA certificate (admin).
kine_refuses_others() {
  [[ -z "$(kine_health)" && -z "$(kine_health --cert "$pki/admin.crt" --key "$pki/admin.key")" ]]
}
https_ok() { curl -sk --max-time 2 "$1" | grep -qx ok; }

ensure_socat() {
  command -v socat >/dev/null && return 0
  log "installing socat (Debian package) for the API forward on $host_ip"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null; } ||
    die "could not install socat"
}

node_script="$here/node/node.sh"
node_enabled() { [[ -f "$node_script" && "${POSTGRES_APPS_NODE:-1}" != 0 ]]; }

cmd_up() {
  local t0=$SECONDS c
  "$here/k8s/build.sh" kubernetes
  "$here/k8s/build.sh" kine
  command -v openssl >/dev/null || die "openssl not found"
  command -v curl >/dev/null || die "curl not found"
  ensure_socat
  mkdir -p "$pid_dir" "$log_dir" "$cluster_dir"
  ensure_host_ip
  ensure_pki

  # Restart what an older checkout started with other flags (dependents first: the API server
  # before kine), so that an upgraded clone gets the current settings without `down --purge`.
  local i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c="${components[i]}"
    if is_stale "$c"; then
      log "$c: runs with other flags than this script gives it (older checkout, or other POSTGRES_APPS_* settings): restarting it"
      stop_component "$c"
    fi
  done

  local all_running=1
  for c in "${components[@]}"; do is_running "$c" || all_running=0; done
  if ((all_running)) && api_ready; then
    log "control plane already running"
  else
    start_component kine
    wait_until kine "kine listening on $kine_addr" listens_as kine
    wait_until kine "kine health (TLS, client certificate)" kine_healthy
    start_component kube-apiserver
    wait_until kube-apiserver "listening on 127.0.0.1:$api_port" listens_as kube-apiserver
    wait_until kube-apiserver "/readyz" api_ready
    start_component apiserver-forward
    wait_until apiserver-forward "listening on $host_ip:$api_port" listens_as apiserver-forward
    start_component kube-controller-manager
    start_component kube-scheduler
    for c in kube-controller-manager kube-scheduler; do
      wait_until "$c" "listening on $(component_listen "$c")" listens_as "$c"
      wait_until "$c" "/healthz" https_ok "$(component_health "$c")"
    done
    wait_until kube-apiserver "kubectl get ns" kc get ns
    log "control plane ready in $((SECONDS - t0))s"
  fi

  if node_enabled; then
    log "starting the node: $node_script up"
    "$node_script" up || die "node failed to start (see $node_script and $log_dir)"
  fi
  cmd_where
}

cmd_where() {
  cat <<EOF
Local Kubernetes v$KUBERNETES_VERSION control plane (state: $state)
  kine (SQLite)            https://$kine_addr        client certificates of $pki/etcd-ca.crt only; data $cluster_dir/kine/db
  kube-apiserver           https://127.0.0.1:$api_port       no anonymous requests; advertised as $host_ip:$api_port (forwarded)
  kube-controller-manager  https://127.0.0.1:$kcm_port/healthz
  kube-scheduler           https://127.0.0.1:$scheduler_port/healthz
  service CIDR $service_cidr (API $first_service_ip, DNS 10.96.0.10), pod CIDR $cluster_cidr
  host address $host_ip on $host_if; node name $node_name
  kubeconfig   export KUBECONFIG=$admin_kubeconfig   (context $context_name)
  kubectl      $kubectl_bin
  logs         $log_dir/<component>.log   (localenv/cluster.sh logs)
EOF
}

stop_component() {
  local c="$1" pid deadline
  if ! pid="$(pid_of "$c")"; then
    rm -f "$pid_dir/$c.pid"
    return 0
  fi
  local t0
  t0="$(date +%s%N)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$c: still running after ${stop_timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  # socat forks one child per connection; they are in the same session (setsid) as the parent.
  pkill -KILL -s "$pid" 2>/dev/null || true
  rm -f "$pid_dir/$c.pid"
  log "$c: stopped ($((($(date +%s%N) - t0) / 1000000))ms)"
}

cmd_down() {
  local purge=0
  [[ "${1:-}" == --purge ]] && purge=1
  if node_enabled; then
    log "stopping the node: $node_script down"
    "$node_script" down || log "WARNING: node.sh down failed; stopping the control plane anyway"
  fi
  local i
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do stop_component "${components[i]}"; done
  if ((purge)); then
    log "purging $cluster_dir, $kube_dir and the control-plane logs"
    rm -rf "$cluster_dir" "$kube_dir"
    for c in "${components[@]}"; do rm -f "$log_dir/$c.log"; done
  fi
}

cmd_status() {
  local c rc=0 pid health
  for c in "${components[@]}"; do
    if pid="$(pid_of "$c")"; then
      health=""
      listens_as "$c" || health=" NOT-OK: not listening on $(component_listen "$c")"
      ! is_stale "$c" || health=" NOT-OK: runs with other flags (older checkout or other POSTGRES_APPS_* settings; 'up' restarts it)"
      [[ -n "$health" ]] || case "$c" in
        kube-apiserver) api_ready && health=" readyz=ok" || health=" readyz=NOT-OK" ;;
        kine) kine_healthy && health=" health=SERVING (TLS, client cert)" || health=" health=NOT-OK" ;;
        apiserver-forward) tcp_open "$host_ip:$api_port" && health=" $host_ip:$api_port open" || health=" CLOSED" ;;
        *) https_ok "$(component_health "$c")" && health=" healthz=ok" || health=" healthz=NOT-OK" ;;
      esac
      printf '%-24s up    pid %-7s%s\n' "$c" "$pid" "$health"
      [[ "$health" == *NOT-OK* || "$health" == *CLOSED* ]] && rc=1
    else
      printf '%-24s down\n' "$c"
      rc=1
    fi
  done
  if node_enabled; then "$node_script" status || rc=1; fi
  return "$rc"
}

# Acceptance check of a running control plane; every step can fail and exits non-zero if it does.
cmd_check() {
  local ns="cluster-check-$$" out sa_token secret_token
  [[ "$(kc get --raw /readyz)" == ok ]] || die "check: /readyz is not ok"
  echo "check: /readyz ok"
  out="$(api_anonymous_status)"
  [[ "$out" == 401 ]] || die "check: a request to the API without credentials got HTTP $out, not 401"
  echo "check: a request to the API without credentials gets 401"
  kine_healthy || die "check: kine does not answer the API server's client certificate"
  kine_refuses_others || die "check: kine answers a client without a certificate of its own CA"
  echo "check: kine answers the API server's client certificate only (none, or the admin's: refused)"
  kc create namespace "$ns" >/dev/null
  # shellcheck disable=SC2064 # expand $ns now
  trap "'$kubectl_bin' --kubeconfig '$admin_kubeconfig' delete namespace '$ns' --wait=false >/dev/null 2>&1 || true" EXIT
  kc label namespace "$ns" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest >/dev/null
  # The serviceaccount controller creates 'default' in a new namespace; until then the ServiceAccount
  # admission plugin rejects every Pod (which would hide what PodSecurity does).
  local deadline=$((SECONDS + 30))
  until kc -n "$ns" get serviceaccount default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "check: ServiceAccount 'default' not created in $ns (serviceaccount controller)"
    sleep 0.5
  done
  if out="$(kc -n "$ns" apply -f - 2>&1 <<EOF
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
    - name: c
      image: docker.io/library/busybox:1.36
      securityContext: {privileged: true}
EOF
  )"; then
    die "check: a privileged Pod was ADMITTED in a namespace enforcing 'restricted': $out"
  fi
  grep -q 'violates PodSecurity "restricted' <<<"$out" || die "check: privileged Pod rejected, but not by PodSecurity: $out"
  echo "check: privileged Pod rejected by PodSecurity admission: ${out:0:160}..."
  # ...while a Pod that meets 'restricted' passes every admission plugin (server-side dry run).
  out="$(kc -n "$ns" apply --dry-run=server -f - 2>&1 <<EOF
apiVersion: v1
kind: Pod
metadata: {name: restricted}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: c
      image: docker.io/library/busybox:1.36
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
  )" || die "check: a Pod that meets 'restricted' was rejected: $out"
  echo "check: a Pod meeting 'restricted' is admitted (server-side dry run)"
  # A TokenRequest token is issued for 'default', and a legacy token Secret gets filled by the
  # token controller (controller manager, SA signing key).
  sa_token="$(kc -n "$ns" create token default --duration=10m)"
  [[ "$sa_token" == *.*.* ]] || die "check: TokenRequest returned no JWT"
  # A kubeconfig without the admin client certificate, so the token alone authenticates.
  "$kubectl_bin" --kubeconfig /dev/null --server "https://127.0.0.1:$api_port" \
    --certificate-authority "$pki/ca.crt" --token "$sa_token" \
    auth whoami -o jsonpath='{.status.userInfo.username}' 2>/dev/null |
    grep -qx "system:serviceaccount:$ns:default" || die "check: the issued token does not authenticate as the ServiceAccount"
  echo "check: TokenRequest token issued and authenticates as system:serviceaccount:$ns:default"
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: default-token
  annotations: {kubernetes.io/service-account.name: default}
type: kubernetes.io/service-account-token
EOF
  deadline=$((SECONDS + 30))
  until secret_token="$(kc -n "$ns" get secret default-token -o jsonpath='{.data.token}')" && [[ -n "$secret_token" ]]; do
    ((SECONDS < deadline)) || die "check: token controller did not fill Secret default-token"
    sleep 0.5
  done
  echo "check: token controller filled Secret $ns/default-token (${#secret_token} base64 chars)"
  echo "check: all passed"
}

cmd_logs() {
  local follow=0 which=() c
  for a in "$@"; do
    case "$a" in
      -f) follow=1 ;;
      *) which+=("$a") ;;
    esac
  done
  ((${#which[@]})) || which=("${components[@]}")
  if ((follow)); then
    local files=()
    for c in "${which[@]}"; do files+=("$log_dir/$c.log"); done
    exec tail -n 20 -F "${files[@]}"
  fi
  for c in "${which[@]}"; do
    echo "==> $log_dir/$c.log <=="
    tail -n "${LINES_PER_LOG:-20}" "$log_dir/$c.log" 2>/dev/null || echo "(no log)"
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down)
    shift
    cmd_down "$@"
    ;;
  status) cmd_status ;;
  logs)
    shift
    cmd_logs "$@"
    ;;
  check) cmd_check ;;
  host-ip)
    ensure_host_ip
    echo "$host_ip"
    ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac

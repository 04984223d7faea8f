#!/usr/bin/env bash
# The local cluster's single node: containerd + CNI bridge + kubelet + kube-proxy + CoreDNS, and the
# in-cluster PostgreSQL (localenv/node/postgres.sh). Called by localenv/cluster.sh after the control
# plane is ready (`up`) and before it stops (`down`).
#
#   localenv/node/node.sh up       idempotent: start what is not running, wait until the node is Ready,
#                                  CoreDNS answers and PostgreSQL is ready
#   localenv/node/node.sh down     evict the node's pods (clean CNI teardown, clean PostgreSQL shutdown),
#                                  stop kube-proxy/kubelet/containerd, remove iptables chains, the bridge,
#                                  leftover mounts and sysctl changes; keeps images and data for the next up
#   localenv/node/node.sh status   one line per component
#   localenv/node/node.sh runtime  only containerd + the images (no control plane needed)
#   localenv/node/node.sh clean    remove leftovers of a run killed without `down` (stale portmap DNAT
#                                  for 127.0.0.1:15432, pod netns/veths, the bridge, mounts)
#
# Facts behind the settings: shared/notes/node-facts.md (cgroup v1 + cgroupfs, no CAP_SYS_RESOURCE →
# restrict_oom_score_adj + --oom-score-adj=0, no IPVS, no dummy links) and docs/local-node.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=/dev/null
. "$REPO/localenv/versions.env"
CACHE="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
K8S_BIN="$CACHE/kubernetes-v$KUBERNETES_VERSION/bin"
STATE="$REPO/.state/node"
KUBE="$REPO/.state/kube"
LOGS="$REPO/.state/logs"
PIDS="$STATE/pids"

# Facts about the control plane, written by localenv/cluster.sh (node name, the host address, CIDRs).
CLUSTER_ENV="$KUBE/cluster.env"
if [[ -s "$CLUSTER_ENV" ]]; then
  # shellcheck source=/dev/null
  . "$CLUSTER_ENV"
fi
NODE_NAME="${NODE_NAME:-postgres-apps-node}"
# The node's address is the control plane's host address (a /32 on its port-less bridge, local to this
# machine): the kubelet refuses a loopback node IP and the API refuses loopback endpoints.
NODE_IP="${HOST_IP:-10.250.0.1}"
POD_CIDR="10.244.0.0/24"
POD_GATEWAY="10.244.0.1"
CLUSTER_CIDR="${CLUSTER_CIDR:-10.244.0.0/16}"
CLUSTER_DNS="${CLUSTER_DNS:-10.96.0.10}"
CLUSTER_DOMAIN="${CLUSTER_DOMAIN:-cluster.local}"
BRIDGE="pa-cni0"
FWD_CHAIN="PGAPPS-NODE-FWD"
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"
# A unix socket path has at most 107 bytes (and containerd adds ".ttrpc"): a deep clone uses /run instead.
if ((${#CONTAINERD_SOCK} > 95)); then
  CONTAINERD_SOCK="/run/postgres-apps-$(printf '%s' "$REPO" | sha256sum | cut -c1-12)/containerd.sock"
fi
KUBECONFIG_ADMIN="$KUBE/admin.kubeconfig"
KUBECONFIG_KUBELET="$KUBE/kubelet.kubeconfig"
KUBECONFIG_PROXY="$KUBE/kube-proxy.kubeconfig"

log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

kubectl_bin() {
  if [[ -x "$K8S_BIN/kubectl" ]]; then echo "$K8S_BIN/kubectl"; else command -v kubectl; fi
}
k() { "$(kubectl_bin)" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------- processes
pid_of() { # name → pid if running
  local f="$PIDS/$1.pid" pid
  [[ -s "$f" ]] || return 1
  pid="$(cat "$f")"
  alive "$pid" || return 1
  # Guard against pid reuse: the process must be the binary we started.
  grep -qa -- "$1" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

start_bg() { # name binary args...
  local name="$1"
  shift
  mkdir -p "$PIDS" "$LOGS"
  {
    echo "---- $(date -u +%FT%TZ) starting $name"
  } >>"$LOGS/$name.log"
  # The process records its own pid after setsid: when this script runs as a process-group
  # leader's job (`set -m`, as CI harnesses and `( … ) &` shells do), setsid forks, and `$!` is a
  # parent that exits at once — the kubelet then looked dead, its start was reported failed, and
  # the sysctls it checks were restored under it ("invalid kernel flag: kernel/panic").
  local pidfile="$PIDS/$name.pid" i
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $0 belong to the inner shell
  setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  for ((i = 0; i < 100; i++)); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.05
  done
  echo "$name: no pid after 5 s" >&2
  return 1
}

alive() { # pid: running and not a zombie (PID 1 here may be slow to reap orphans)
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

stop_proc() { # name [timeout_s]
  local name="$1" timeout="${2:-20}" pid i
  pid="$(pid_of "$name")" || {
    rm -f "$PIDS/$name.pid"
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) did not stop in ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$PIDS/$name.pid"
  log "stopped $name"
}

wait_for() { # description timeout_s command...
  local what="$1" timeout="$2" start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= timeout)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

fail_with_log() { # component message
  log "ERROR: $1: $2; last lines of $LOGS/$1.log:"
  tail -n 30 "$LOGS/$1.log" >&2 || true
  exit 1
}

# ---------------------------------------------------------------- host preparation
ensure_packages() {
  local missing=() c
  for c in containerd runc ctr iptables iptables-restore conntrack umoci mmdebstrap gcc curl openssl python3; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap && -x /usr/lib/cni/loopback ]] ||
    missing+=(cni-plugins)
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages (missing: ${missing[*]})"
  local pkgs=(containerd runc containernetworking-plugins iptables conntrack umoci skopeo mmdebstrap gcc libc6-dev
    curl openssl python3)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
}

check_control_plane() {
  local f
  for f in "$K8S_BIN/kubelet" "$K8S_BIN/kube-proxy"; do
    [[ -x "$f" ]] || die "$f missing: run localenv/k8s/build.sh first"
  done
  for f in "$KUBECONFIG_ADMIN" "$KUBECONFIG_KUBELET" "$KUBECONFIG_PROXY"; do
    [[ -s "$f" ]] || die "$f missing: start the control plane first (localenv/cluster.sh up)"
  done
  k get --raw /readyz >/dev/null 2>&1 || die "the API server does not answer /readyz (localenv/cluster.sh up)"
}

# sysctls the node needs; the originals are kept and restored by `down`.
SYSCTLS_CHANGED=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
save_sysctls() {
  [[ -s "$STATE/sysctl.orig" ]] && return 0
  local s
  for s in "${SYSCTLS_CHANGED[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$STATE/sysctl.orig"
}
restore_sysctls() { # [names...] (default: all saved)
  [[ -s "$STATE/sysctl.orig" ]] || return 0
  local line name
  while IFS= read -r line; do
    name="${line%%=*}"
    if (($# == 0)) || [[ " $* " == *" $name "* ]]; then sysctl -q -w "$line" >/dev/null || true; fi
  done <"$STATE/sysctl.orig"
  (($# == 0)) && rm -f "$STATE/sysctl.orig"
  return 0
}

prepare_host() {
  mkdir -p "$STATE" "$PIDS" "$LOGS"
  save_sysctls
  sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null
  # Pod traffic may reach pods, the node and services, never another interface (nothing leaves the VM).
  iptables -w -N "$FWD_CHAIN" 2>/dev/null || true
  iptables -w -F "$FWD_CHAIN"
  iptables -w -A "$FWD_CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j RETURN
  iptables -w -A "$FWD_CHAIN" -i "$BRIDGE" -j REJECT
  iptables -w -A "$FWD_CHAIN" -s "$CLUSTER_CIDR" ! -o "$BRIDGE" -j REJECT
  iptables -w -C FORWARD -j "$FWD_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$FWD_CHAIN"
}

# ---------------------------------------------------------------- containerd
write_containerd_config() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam" "$(dirname "$CONTAINERD_SOCK")"
  cat >"$STATE/containerd/config.toml" <<EOF
# Written by localenv/node/node.sh: a project-owned containerd (nothing under /var/lib/containerd).
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/postgres-apps/pause:1.0"
  # No CAP_SYS_RESOURCE on these VMs: never try to lower a container's oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOF
}

write_cni_config() {
  cat >"$STATE/cni/net.d/10-postgres-apps.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "postgres-apps",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOF
}

start_containerd() {
  if pid_of containerd >/dev/null; then
    log "containerd already running"
    return 0
  fi
  write_containerd_config
  write_cni_config
  rm -f "$CONTAINERD_SOCK"
  start_bg containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd socket" 30 ctr --address "$CONTAINERD_SOCK" version ||
    fail_with_log containerd "containerd did not start"
  log "containerd up (socket $CONTAINERD_SOCK)"
}

# ---------------------------------------------------------------- kubelet
ca_file() { # the cluster CA, from the admin kubeconfig
  local out="$STATE/pki/ca.crt"
  mkdir -p "$STATE/pki"
  "$(kubectl_bin)" --kubeconfig "$KUBECONFIG_ADMIN" config view --raw --minify \
    -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$out.tmp" 2>/dev/null || true
  if [[ ! -s "$out.tmp" ]]; then
    local path
    path="$("$(kubectl_bin)" --kubeconfig "$KUBECONFIG_ADMIN" config view --raw --minify \
      -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
    [[ "$path" == /* ]] || path="$KUBE/$path"
    cp "$path" "$out.tmp"
  fi
  mv -f "$out.tmp" "$out"
  echo "$out"
}

# The kubelet's serving certificate: the one localenv/cluster.sh issues (CA-signed, SANs the node name and
# the host address); without it the kubelet makes a self-signed pair.
kubelet_serving_cert() {
  [[ -s "$KUBE/pki/kubelet-server.crt" && -s "$KUBE/pki/kubelet-server.key" ]]
}

write_kubelet_config() {
  local ca="$1" tls=""
  if kubelet_serving_cert; then
    tls="tlsCertFile: $KUBE/pki/kubelet-server.crt
tlsPrivateKeyFile: $KUBE/pki/kubelet-server.key"
  else
    log "no $KUBE/pki/kubelet-server.crt: the kubelet uses a self-signed serving certificate"
  fi
  mkdir -p "$STATE/kubelet"
  cat >"$STATE/kubelet/config.yaml" <<EOF
# Written by localenv/node/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
$tls
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $ca}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# cgroup v1 only, PID 1 is not systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
# No CAP_SYS_RESOURCE: the default -999 cannot be set.
oomScoreAdj: 0
# The kernel tunables the kubelet wants are set by node.sh before start (panic ones restored after).
protectKernelDefaults: true
clusterDNS: [$CLUSTER_DNS]
clusterDomain: $CLUSTER_DOMAIN
# Pods get only the cluster resolver: no host search domains, no upstream resolvers.
resolvConf: ""
staticPodPath: ""
failSwapOn: false
maxPods: 60
serializeImagePulls: false
# Local images cannot be pulled again: never garbage-collect them; never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "200Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 30s
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
podCIDR: $POD_CIDR
shutdownGracePeriod: 0s
EOF
}

kubelet_healthy() { curl -fsS --max-time 2 http://127.0.0.1:10248/healthz >/dev/null; }

KUBELET_FAILED=""
kubelet_started() { # LOG_FROM_LINE: true once the container manager started, or the kubelet failed
  local new
  new="$(tail -n "+$1" "$LOGS/kubelet.log")"
  if ! pid_of kubelet >/dev/null || grep -q 'Failed to start ContainerManager' <<<"$new"; then
    KUBELET_FAILED=1
    return 0
  fi
  grep -q 'Eviction manager: starting control loop' <<<"$new"
}

start_kubelet() {
  if pid_of kubelet >/dev/null; then
    log "kubelet already running"
    return 0
  fi
  local ca
  ca="$(ca_file)"
  write_kubelet_config "$ca"
  # The values the kubelet checks with protectKernelDefaults (it would otherwise write them itself).
  # It only checks them once, at start; should it still refuse them (seen on 2026-12-02 before
  # start_bg recorded the right pid), set them again and start it again, at most 3 times.
  local attempt log_from
  for attempt in 1 2 3; do
    sysctl -q -w vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 \
      kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000 >/dev/null
    log_from=$(($(wc -l <"$LOGS/kubelet.log" 2>/dev/null || echo 0) + 1))
    KUBELET_STARTED_AT="$(date -u +%FT%TZ)"
    KUBELET_FAILED=""
    start_bg kubelet "$K8S_BIN/kubelet" \
      --config "$STATE/kubelet/config.yaml" \
      --kubeconfig "$KUBECONFIG_KUBELET" \
      --root-dir "$STATE/kubelet/root" \
      --cert-dir "$STATE/kubelet/pki" \
      --hostname-override "$NODE_NAME" \
      --node-ip "$NODE_IP" \
      --v 1
    # The kernel tunables are checked when the container manager starts, after the runtime
    # answered (later than /healthz): wait for the eviction manager, which starts right after it.
    if wait_for "kubelet container manager" 90 kubelet_started "$log_from" && [[ -z "$KUBELET_FAILED" ]]; then
      break
    fi
    if ((attempt < 3)) && tail -n "+$log_from" "$LOGS/kubelet.log" | grep -q 'invalid kernel flag'; then
      log "kubelet refused the kernel flags (attempt $attempt: $(sysctl -n kernel.panic) for kernel.panic); again"
      stop_proc kubelet 20 || true
      continue
    fi
    restore_sysctls kernel.panic kernel.panic_on_oops
    fail_with_log kubelet "kubelet did not start its container manager"
  done
  # An oops must not reboot the VM: the kubelet only checks these at start.
  restore_sysctls kernel.panic kernel.panic_on_oops
  wait_for "kubelet healthz" 60 kubelet_healthy || fail_with_log kubelet "kubelet did not become healthy"
  log "kubelet up (healthz 127.0.0.1:10248, API $NODE_IP:10250)"
}

# ---------------------------------------------------------------- kube-proxy
start_kube_proxy() {
  if pid_of kube-proxy >/dev/null; then
    log "kube-proxy already running"
    return 0
  fi
  mkdir -p "$STATE/kube-proxy"
  cat >"$STATE/kube-proxy/config.yaml" <<EOF
# Written by localenv/node/node.sh. iptables mode (no IPVS in this kernel).
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $KUBECONFIG_PROXY
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node's own /32, never on eth0.
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
# Leave the conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start_bg kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy/config.yaml" --v 1
  wait_for "kube-proxy healthz" 60 curl -fsS --max-time 2 http://127.0.0.1:10256/healthz ||
    fail_with_log kube-proxy "kube-proxy did not become healthy"
  log "kube-proxy up (iptables mode)"
}

# ---------------------------------------------------------------- cluster objects
KUBELET_STARTED_AT=""
node_ready() { # Ready, and reported by this kubelet (not a stale condition from before a restart)
  local st
  st="$(k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null)" || return 1
  [[ "${st%% *}" == True ]] || return 1
  [[ -z "$KUBELET_STARTED_AT" || ! "${st#* }" < "$KUBELET_STARTED_AT" ]]
}

apply_node_rbac() {
  # The API server's client identity for kubelet calls (logs, exec, port-forward) must be allowed by the
  # kubelet's webhook authorizer: bind the built-in role to the user named in the API server's client cert.
  local user
  user="$(kubelet_client_user)"
  if [[ -n "$user" ]]; then
    k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: postgres-apps:apiserver-kubelet-api-admin
  labels: {app.kubernetes.io/part-of: postgres-apps-localenv}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "$user"}
EOF
  else
    log "WARNING: could not find the API server's kubelet client certificate: kubectl logs/exec may be forbidden"
  fi
}

# The API server reaches the kubelet (logs, exec) by the node's first address type in its
# --kubelet-preferred-address-types, by default Hostname: "postgres-apps-node" must resolve on this host
# unless the API server prefers InternalIP. Then a marked /etc/hosts line (removed by `down`).
HOSTS_MARK="# postgres-apps local node (localenv/node/node.sh)"
apiserver_prefers_ip() {
  local pid
  for pid in $(pgrep -x kube-apiserver 2>/dev/null); do
    tr '\0' '\n' <"/proc/$pid/cmdline" | grep -Eq '^--kubelet-preferred-address-types(=|$)' &&
      tr '\0' ' ' <"/proc/$pid/cmdline" | grep -Eq -- '--kubelet-preferred-address-types[= ]InternalIP' && return 0
  done
  return 1
}
ensure_node_name_resolves() {
  if apiserver_prefers_ip; then
    remove_hosts_entry
    return 0
  fi
  if getent hosts "$NODE_NAME" | grep -q "^$NODE_IP "; then return 0; fi
  remove_hosts_entry
  printf '%s %s %s\n' "$NODE_IP" "$NODE_NAME" "$HOSTS_MARK" >>/etc/hosts
  log "added '$NODE_IP $NODE_NAME' to /etc/hosts (the API server reaches kubelets by Hostname first)"
}
remove_hosts_entry() {
  grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null || return 0
  # In place (the file may be a bind mount).
  local kept
  kept="$(grep -vF "$HOSTS_MARK" /etc/hosts)"
  printf '%s\n' "$kept" >/etc/hosts
}

kubelet_client_user() {
  # The apiserver's --kubelet-client-certificate, from its command line (the control plane runs it here).
  local pid cert arg
  for pid in $(pgrep -x kube-apiserver 2>/dev/null); do
    while IFS= read -r -d '' arg; do
      case "$arg" in --kubelet-client-certificate=*) cert="${arg#*=}" ;; esac
    done <"/proc/$pid/cmdline"
    local prev=""
    while IFS= read -r -d '' arg; do
      [[ "$prev" == --kubelet-client-certificate ]] && cert="$arg"
      prev="$arg"
    done <"/proc/$pid/cmdline"
  done
  [[ -n "${cert:-}" && -s "$cert" ]] || return 0
  openssl x509 -in "$cert" -noout -subject -nameopt multiline 2>/dev/null |
    sed -n 's/^ *commonName *= *//p' | head -n1
}

apply_coredns() {
  # A normal pod (pod network, in-cluster config through the `kubernetes` Service, which the control
  # plane forwards from its host address to the API server).
  sed "s|\${COREDNS_VERSION}|$COREDNS_VERSION|g" "$HERE/coredns.yaml" | k apply -f - >/dev/null
}

wait_coredns() {
  k -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null ||
    {
      k -n kube-system get pods -l k8s-app=kube-dns -o wide >&2 || true
      k -n kube-system logs deployment/coredns --tail=20 >&2 || true
      die "CoreDNS did not become ready"
    }
}

dns_answers() {
  # From the host, through the Service IP (kube-proxy DNAT to the CoreDNS pod).
  [[ -n "$(dig_like "kubernetes.default.svc.$CLUSTER_DOMAIN")" ]]
}

dig_like() { # name → first A record via 10.96.0.10, using python (no dig on the host)
  python3 - "$1" "$CLUSTER_DNS" <<'PY'
import random, socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
qid = random.randint(0, 65535)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (server, 53))
data = s.recv(4096)
if struct.unpack(">H", data[:2])[0] != qid or data[3] & 0x0F != 0 or struct.unpack(">H", data[6:8])[0] == 0:
    sys.exit(1)
print(socket.inet_ntoa(data[-4:]))
PY
}

# ---------------------------------------------------------------- teardown
evict_pods() {
  # Cordon, then delete the node's pods so that the kubelet tears them down through the CRI (CNI DEL,
  # portmap rules, mounts) and PostgreSQL shuts down cleanly. `up` uncordons.
  k get --raw /readyz >/dev/null 2>&1 || return 1
  pid_of kubelet >/dev/null || return 1
  k cordon "$NODE_NAME" >/dev/null 2>&1 || return 1
  local pods
  pods="$(k get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null | wc -l)"
  ((pods == 0)) && return 0
  log "deleting the node's $pods pods (clean teardown)"
  local ns name
  while read -r ns name; do
    if [[ -n "$name" ]]; then k -n "$ns" delete pod "$name" --wait=false >/dev/null 2>&1 || true; fi
  done < <(k get pods -A --field-selector "spec.nodeName=$NODE_NAME" \
    -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}')
  local start=$SECONDS
  while ((SECONDS - start < 90)); do
    running_tasks || return 0
    sleep 0.5
  done
  log "some containers were still running after 90s"
}

running_tasks() { # true when a container task is still running
  ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" {found = 1} END {exit !found}'
}

# After the kubelet stopped: remove every container (and its snapshot) so the next `up` starts from a
# clean runtime, and the network namespaces containerd made. The images stay.
remove_containers() {
  [[ -S "$CONTAINERD_SOCK" ]] && pid_of containerd >/dev/null || return 0
  local c netns
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    netns="$(ctr_ containers info "$c" 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path"):
        print(ns["path"])' 2>/dev/null || true)"
    ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true
    ctr_ containers delete "$c" >/dev/null 2>&1 || true
    if [[ "$netns" == /var/run/netns/cni-* || "$netns" == /run/netns/cni-* ]]; then
      umount "$netns" 2>/dev/null || true
      rm -f "$netns"
    fi
  done
}

# containerd-shim processes of this containerd (they outlive containerd by design).
stop_shims() {
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true); do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

cleanup_network() {
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "${STATE:?}/cni/ipam"
  # portmap's chains (per-pod chains are removed by CNI DEL; the top-level ones stay) and the kubelet's
  # (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT; kube-proxy's went with --cleanup). Deleted
  # through iptables-restore, which parses the quoted comments of `iptables -S` output.
  local tool table script
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in nat filter mangle; do
      script="$("$tool" -w -t "$table" -S 2>/dev/null | awk '
        $1 == "-N" && $2 ~ /^(CNI|KUBE)-/ { chains[++n] = $2; next }
        $1 == "-A" && $0 ~ / -j (CNI|KUBE)-[^ ]*( |$)/ && $2 !~ /^(CNI|KUBE)-/ { sub(/^-A/, "-D"); print }
        END { for (i = 1; i <= n; i++) print "-F " chains[i]; for (i = 1; i <= n; i++) print "-X " chains[i] }')"
      [[ -n "$script" ]] || continue
      printf '*%s\n%s\nCOMMIT\n' "$table" "$script" | "$tool-restore" -w --noflush ||
        log "WARNING: could not remove the CNI/KUBE chains in $tool table $table"
    done
  done
  iptables -w -D FORWARD -j "$FWD_CHAIN" 2>/dev/null || true
  iptables -w -F "$FWD_CHAIN" 2>/dev/null || true
  iptables -w -X "$FWD_CHAIN" 2>/dev/null || true
}

unmount_state() {
  local m
  # Deepest first.
  for m in $(findmnt -rn -o TARGET | grep -F "$STATE/" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  for m in /var/run/netns/cni-* /run/netns/cni-*; do
    [[ -e "$m" ]] || continue
    # Only namespaces no process uses any more.
    if ! find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l\n' 2>/dev/null | grep -qx "$(stat -L -c 'net:[%i]' "$m" 2>/dev/null)"; then
      umount "$m" 2>/dev/null || true
      rm -f "$m"
    fi
  done
}

remove_kubepods_cgroups() {
  local ctl
  for ctl in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$ctl" ]] || continue
    find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# ---------------------------------------------------------------- commands
# Before a fresh start (nothing of ours running): leftovers of a run that never got its `down` (a
# session or CI run that was killed, possibly from another clone) would break this one: pod network
# namespaces that keep stale veths (and their IPs) on the bridge, portmap DNAT rules that still send
# 127.0.0.1:15432 to a dead pod's IP, mounts under .state/node.
preclean_host() {
  if pid_of containerd >/dev/null || pid_of kubelet >/dev/null; then return 0; fi
  local other="" pid
  for pid in $(pgrep -x kubelet || true); do
    if alive "$pid"; then other="$pid"; fi
  done
  [[ -z "$other" ]] || die "a kubelet this clone did not start runs on this machine (pid $other, $(readlink "/proc/$other/cwd" 2>/dev/null)): stop it first (its clone's localenv/cluster.sh down); two nodes cannot share the node name, ports and bridge"
  if ip link show "$BRIDGE" >/dev/null 2>&1 || ls /run/netns/cni-* >/dev/null 2>&1 ||
    iptables -w -t nat -S 2>/dev/null | grep -q '^-N CNI-'; then
    log "removing leftovers of a previous run that was not stopped with 'down'"
  fi
  unmount_state
  cleanup_network
}

ensure_images() {
  # The CoreDNS image packs the binary localenv/k8s/build.sh makes (cached: a no-op once built).
  [[ -x "$CACHE/coredns-v$COREDNS_VERSION/bin/coredns" ]] || "$REPO/localenv/k8s/build.sh" coredns
  CONTAINERD_ADDRESS="$CONTAINERD_SOCK" "$REPO/localenv/images/build.sh" all
}

cmd_up() {
  local start=$SECONDS
  ensure_packages
  check_control_plane
  preclean_host
  prepare_host
  start_containerd
  ensure_images
  start_kubelet
  start_kube_proxy
  wait_for "node $NODE_NAME Ready" 120 node_ready || fail_with_log kubelet "node $NODE_NAME is not Ready"
  k uncordon "$NODE_NAME" >/dev/null
  local allocated
  allocated="$(k get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}')"
  if [[ -n "$allocated" && "$allocated" != "$POD_CIDR" ]]; then
    log "WARNING: the controller-manager gave the node podCIDR $allocated; the CNI bridge uses $POD_CIDR"
  fi
  log "node $NODE_NAME Ready"
  apply_node_rbac
  ensure_node_name_resolves
  apply_coredns
  # PostgreSQL starts while CoreDNS does.
  "$HERE/postgres.sh" up
  wait_coredns
  wait_for "cluster DNS on $CLUSTER_DNS" 60 dns_answers || die "CoreDNS does not answer on $CLUSTER_DNS"
  log "CoreDNS ready on $CLUSTER_DNS"
  log "node up in $((SECONDS - start)) s"
}

cmd_down() {
  local start=$SECONDS
  evict_pods || log "API or kubelet not available: killing containers directly"
  stop_proc kube-proxy
  if [[ -x "$K8S_BIN/kube-proxy" ]]; then
    "$K8S_BIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || true
  fi
  stop_proc kubelet 30
  remove_containers
  stop_proc containerd 30
  stop_shims
  cleanup_network
  remove_hosts_entry
  unmount_state
  remove_kubepods_cgroups
  restore_sysctls
  log "node down in $((SECONDS - start)) s"
}

cmd_status() {
  local rc=0 name
  for name in containerd kubelet kube-proxy; do
    if pid="$(pid_of "$name")"; then
      printf '%-12s up   (pid %s)\n' "$name" "$pid"
    else
      printf '%-12s down\n' "$name"
      rc=1
    fi
  done
  if [[ -s "$KUBECONFIG_ADMIN" ]] && k get --raw /readyz >/dev/null 2>&1; then
    printf '%-12s %s\n' node "$(k get node "$NODE_NAME" --no-headers 2>/dev/null | awk '{print $2}' || echo absent)"
    printf '%-12s %s\n' coredns "$(k -n kube-system get deploy coredns -o jsonpath='{.status.readyReplicas}/{.spec.replicas} ready' 2>/dev/null || echo absent)"
  fi
  "$HERE/postgres.sh" status || rc=1
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  clean)
    # Leftovers of a run that was killed without `down` (safe when nothing runs; CI can call it first).
    if pid_of containerd >/dev/null || pid_of kubelet >/dev/null; then die "the node is running: use down"; fi
    preclean_host
    remove_hosts_entry
    log "no node leftovers on this machine"
    ;;
  runtime)
    # Only the container runtime and the images (no control plane needed): pre-warms a cold start.
    ensure_packages
    prepare_host
    start_containerd
    ensure_images
    ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status|runtime|clean" >&2
    exit 2
    ;;
esac

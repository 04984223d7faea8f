#!/usr/bin/env bash
# PostgreSQL 15 inside the local cluster, shaped like the Bitnami chart's release "postgres" in
# namespace "data": Secret postgres-postgresql (key postgres-password), Services postgres-postgresql and
# postgres-postgresql-hl, StatefulSet postgres-postgresql (1 replica, data in a hostPath volume under
# .state/node/pv/). The admin endpoint for Pulumi on the host is 127.0.0.1:15432: a hostPort bound to
# 127.0.0.1 (CNI portmap), no port-forward process to babysit.
#
#   localenv/node/postgres.sh up       apply (idempotent) and wait until ready and reachable on 127.0.0.1:15432
#   localenv/node/postgres.sh down     delete the objects (the data directory and password stay)
#   localenv/node/postgres.sh status   one line
#   localenv/node/postgres.sh password print the admin password
#   localenv/node/postgres.sh manifest print the manifest (Secret data redacted)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=/dev/null
. "$REPO/localenv/versions.env"
CACHE="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
K8S_BIN="$CACHE/kubernetes-v$KUBERNETES_VERSION/bin"
STATE="$REPO/.state/node"
KUBECONFIG_ADMIN="$REPO/.state/kube/admin.kubeconfig"
PASSWORD_FILE="$STATE/postgres-password"
DATA_DIR="$STATE/pv/postgres-postgresql"
# The claim postgres-apps' pod-mode retirement copies go to (postgres-apps:retirement.persistentVolumeClaim):
# a hostPath PersistentVolume bound to PVC data/postgres-apps-copies, owned by the copy pod's uid.
COPIES_DIR="$STATE/pv/postgres-apps-copies"
COPIES_CLAIM=postgres-apps-copies
COPY_UID=70
IMAGE="docker.io/postgres-apps/postgresql:15-bookworm"
ADMIN_HOST=127.0.0.1
ADMIN_PORT=15432
PG_UID=999

log() { printf '[postgres %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
k() {
  local bin
  if [[ -x "$K8S_BIN/kubectl" ]]; then bin="$K8S_BIN/kubectl"; else bin="$(command -v kubectl)"; fi
  "$bin" --kubeconfig "$KUBECONFIG_ADMIN" "$@"
}

ensure_password() {
  mkdir -p "$STATE"
  if [[ ! -s "$PASSWORD_FILE" ]]; then
    (
      umask 077
      # 32 URL-safe characters.
      openssl rand -base64 48 | tr -d '\n/+=' | cut -c1-32 >"$PASSWORD_FILE"
    )
  fi
}

manifest() { # $1 = password (or a placeholder)
  local pw_b64
  pw_b64="$(printf '%s' "$1" | base64 -w0)"
  cat <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: data
  labels: {app.kubernetes.io/part-of: postgres-apps-localenv}
---
apiVersion: v1
kind: Secret
metadata:
  name: postgres-postgresql
  namespace: data
  labels:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/part-of: postgres-apps-localenv
type: Opaque
data:
  postgres-password: $pw_b64
---
apiVersion: v1
kind: Service
metadata:
  name: postgres-postgresql
  namespace: data
  labels:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/part-of: postgres-apps-localenv
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/component: primary
  ports:
  - {name: tcp-postgresql, port: 5432, targetPort: tcp-postgresql, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: postgres-postgresql-hl
  namespace: data
  labels:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/part-of: postgres-apps-localenv
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/component: primary
  ports:
  - {name: tcp-postgresql, port: 5432, targetPort: tcp-postgresql, protocol: TCP}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: postgres-postgresql
  namespace: data
  labels:
    app.kubernetes.io/name: postgresql
    app.kubernetes.io/instance: postgres
    app.kubernetes.io/part-of: postgres-apps-localenv
spec:
  replicas: 1
  serviceName: postgres-postgresql-hl
  podManagementPolicy: OrderedReady
  updateStrategy: {type: RollingUpdate}
  selector:
    matchLabels:
      app.kubernetes.io/name: postgresql
      app.kubernetes.io/instance: postgres
      app.kubernetes.io/component: primary
  template:
    metadata:
      labels:
        app.kubernetes.io/name: postgresql
        app.kubernetes.io/instance: postgres
        app.kubernetes.io/component: primary
        app.kubernetes.io/part-of: postgres-apps-localenv
    spec:
      enableServiceLinks: false
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsUser: $PG_UID
        runAsGroup: $PG_UID
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: postgresql
        image: $IMAGE
        imagePullPolicy: Never
        env:
        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: postgres-postgresql, key: postgres-password}}
        - {name: PGDATA, value: /var/lib/postgresql/data/pgdata}
        ports:
        # hostPort on 127.0.0.1 only: the admin endpoint for Pulumi on the host.
        - {name: tcp-postgresql, containerPort: 5432, hostPort: $ADMIN_PORT, hostIP: $ADMIN_HOST, protocol: TCP}
        readinessProbe:
          exec: {command: [pg_isready, -h, 127.0.0.1, -p, "5432", -U, postgres, -d, postgres]}
          periodSeconds: 2
          timeoutSeconds: 5
          failureThreshold: 3
        livenessProbe:
          exec: {command: [pg_isready, -h, 127.0.0.1, -p, "5432", -U, postgres, -d, postgres]}
          initialDelaySeconds: 30
          periodSeconds: 10
          timeoutSeconds: 5
          failureThreshold: 6
        resources:
          requests: {cpu: 100m, memory: 128Mi}
          limits: {memory: 1Gi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
        - {name: run, mountPath: /var/run/postgresql}
        - {name: tmp, mountPath: /tmp}
        - {name: dshm, mountPath: /dev/shm}
      volumes:
      - name: data
        hostPath: {path: $DATA_DIR, type: Directory}
      - name: run
        emptyDir: {}
      - name: tmp
        emptyDir: {}
      - name: dshm
        emptyDir: {medium: Memory, sizeLimit: 256Mi}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $COPIES_CLAIM
  labels: {app.kubernetes.io/part-of: postgres-apps-localenv}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: data, name: $COPIES_CLAIM}
  hostPath: {path: $COPIES_DIR, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $COPIES_CLAIM
  namespace: data
  labels: {app.kubernetes.io/part-of: postgres-apps-localenv}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $COPIES_CLAIM
  resources:
    requests: {storage: 2Gi}
YAML
}

# postgres-host.sh (the control plane's stand-in) publishes a selector-less Service of the same name with
# a hand-made EndpointSlice; replace them, and stop its server so 127.0.0.1:15432 is ours.
take_over_from_host_postgres() {
  if [[ -x "$REPO/localenv/postgres-host.sh" ]] && "$REPO/localenv/postgres-host.sh" status >/dev/null 2>&1; then
    log "stopping the host PostgreSQL (localenv/postgres-host.sh down): the in-cluster one serves $ADMIN_HOST:$ADMIN_PORT"
    "$REPO/localenv/postgres-host.sh" down >&2 || true
  fi
  local selector
  if selector="$(k -n data get service postgres-postgresql -o jsonpath='{.spec.selector}' 2>/dev/null)" && [[ -z "$selector" ]]; then
    log "replacing the selector-less Service data/postgres-postgresql"
    k -n data delete service postgres-postgresql --wait=true >/dev/null
    k -n data delete endpointslices -l 'kubernetes.io/service-name=postgres-postgresql,endpointslice.kubernetes.io/managed-by!=endpointslice-controller.k8s.io' >/dev/null 2>&1 || true
    k -n data delete endpoints postgres-postgresql >/dev/null 2>&1 || true
  fi
  if ss -Hltn "sport = :$ADMIN_PORT" 2>/dev/null | grep -q .; then
    die "something on this host already listens on port $ADMIN_PORT: $(ss -Hltnp "sport = :$ADMIN_PORT" | head -n1)"
  fi
}

admin_endpoint_answers() {
  # A PostgreSQL SSLRequest on 127.0.0.1:15432: the server answers 'N' or 'S'.
  python3 - "$ADMIN_HOST" "$ADMIN_PORT" <<'PY'
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.sendall(struct.pack(">II", 8, 80877103))
sys.exit(0 if s.recv(1) in (b"N", b"S") else 1)
PY
}

cmd_up() {
  local start=$SECONDS
  ensure_password
  mkdir -p "$DATA_DIR"
  chown "$PG_UID:$PG_UID" "$DATA_DIR"
  chmod 0700 "$DATA_DIR"
  mkdir -p "$COPIES_DIR"
  chown "$COPY_UID:$COPY_UID" "$COPIES_DIR"
  chmod 0700 "$COPIES_DIR"
  local sts_exists=0
  k -n data get statefulset postgres-postgresql >/dev/null 2>&1 && sts_exists=1
  ((sts_exists)) || take_over_from_host_postgres
  # Server-side apply, as Helm would: no last-applied-configuration annotation, which would carry
  # the admin password (base64) into anything that reads the Secret's metadata.
  manifest "$(cat "$PASSWORD_FILE")" |
    k apply --server-side --force-conflicts --field-manager=postgres-apps-localenv -f - >/dev/null
  k -n data annotate secret postgres-postgresql kubectl.kubernetes.io/last-applied-configuration- \
    >/dev/null 2>&1 || true
  log "applied namespace data, Secret/Services/StatefulSet postgres-postgresql; waiting for readiness"
  k -n data rollout status statefulset/postgres-postgresql --timeout=180s >/dev/null || {
    k -n data get pods -o wide >&2 || true
    k -n data logs statefulset/postgres-postgresql --tail=30 >&2 || true
    die "StatefulSet data/postgres-postgresql is not ready"
  }
  local i
  for ((i = 0; i < 60; i++)); do
    admin_endpoint_answers 2>/dev/null && break
    sleep 0.5
  done
  admin_endpoint_answers || die "PostgreSQL is ready in the cluster but $ADMIN_HOST:$ADMIN_PORT does not answer"
  log "PostgreSQL ready in $((SECONDS - start)) s: in-cluster postgres-postgresql.data.svc.cluster.local:5432, admin $ADMIN_HOST:$ADMIN_PORT"
}

cmd_down() {
  k delete --ignore-not-found -n data statefulset postgres-postgresql service postgres-postgresql \
    service postgres-postgresql-hl secret postgres-postgresql --wait=true >/dev/null
  log "deleted the in-cluster PostgreSQL objects (data kept in $DATA_DIR)"
}

cmd_status() {
  local ready
  ready="$(k -n data get statefulset postgres-postgresql -o jsonpath='{.status.readyReplicas}' 2>/dev/null || true)"
  if [[ "$ready" == 1 ]] && admin_endpoint_answers 2>/dev/null; then
    printf '%-12s ready (in-cluster postgres-postgresql.data:5432, admin %s:%s)\n' postgresql "$ADMIN_HOST" "$ADMIN_PORT"
  else
    printf '%-12s not ready\n' postgresql
    return 1
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  password)
    [[ -s "$PASSWORD_FILE" ]] || die "no password yet (run up)"
    cat "$PASSWORD_FILE"
    ;;
  manifest) manifest "REDACTED" ;;
  *)
    echo "usage: $0 up|down|status|password|manifest" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# End-to-end check of the local node, the way the verification gate uses it:
#   1. a Pod in a namespace enforcing Pod Security `restricted` (non-root uid 70, read-only root FS,
#      emptyDir /tmp, all capabilities dropped, seccomp RuntimeDefault) runs the psql client image,
#      resolves postgres-postgresql.data.svc.cluster.local and runs `select 1` with the admin password;
#      its log is read with `kubectl logs`, then it is deleted;
#   2. psql on the host reaches the admin endpoint 127.0.0.1:15432.
# Prints timings; exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=/dev/null
. "$REPO/localenv/versions.env"
CACHE="${POSTGRES_APPS_CACHE:-$HOME/.cache/postgres-apps}"
KUBECTL="$CACHE/kubernetes-v$KUBERNETES_VERSION/bin/kubectl"
[[ -x "$KUBECTL" ]] || KUBECTL="$(command -v kubectl)"
k() { "$KUBECTL" --kubeconfig "$REPO/.state/kube/admin.kubeconfig" "$@"; }
NS="${SMOKE_NAMESPACE:-node-smoke}"
POD="psql-smoke-$$"
IMAGE="docker.io/postgres-apps/psql-client:15-bookworm"
HOST="postgres-postgresql.data.svc.cluster.local"

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now_ms() { date +%s%3N; }

PW="$("$HERE/postgres.sh" password)"
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
YAML
# The password reaches the pod the way an app's does: from a Secret, as environment.
k -n "$NS" create secret generic smoke-db --from-literal=password="$PW" --dry-run=client -o yaml | k apply -f - >/dev/null

cleanup() { k -n "$NS" delete pod "$POD" --ignore-not-found --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

t0=$(now_ms)
k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $POD
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 70
    runAsGroup: 70
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: psql
    image: $IMAGE
    imagePullPolicy: Never
    command: [/bin/sh, -ec]
    args:
    - |
      getent hosts $HOST
      psql "postgresql://postgres:\$PGPASSWORD_URI@$HOST:5432/postgres" -Atc 'select 1'
    env:
    - name: PGPASSWORD_URI
      valueFrom: {secretKeyRef: {name: smoke-db, key: password}}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    resources:
      requests: {cpu: 10m, memory: 16Mi}
      limits: {memory: 64Mi}
    volumeMounts:
    - {name: tmp, mountPath: /tmp}
  volumes:
  - name: tmp
    emptyDir: {sizeLimit: 16Mi}
YAML
phase=""
for ((i = 0; i < 240; i++)); do
  phase="$(k -n "$NS" get pod "$POD" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 0.25
done
t1=$(now_ms)
out="$(k -n "$NS" logs "$POD" 2>&1 || true)"
log "pod finished: phase=$phase in $((t1 - t0)) ms; log:"
printf '%s\n' "$out" | sed 's/^/    /' >&2
[[ "$phase" == Succeeded ]] || {
  k -n "$NS" describe pod "$POD" | tail -n 20 >&2
  exit 1
}
grep -Eq "^[0-9.]+ +$HOST" <<<"$out" || { log "FAIL: no address for $HOST in the log"; exit 1; }
tail -n1 <<<"$out" | grep -qx 1 || { log "FAIL: select 1 did not print 1"; exit 1; }
k -n "$NS" delete pod "$POD" --wait=true --timeout=60s >/dev/null
t2=$(now_ms)
log "pod deleted in $((t2 - t1)) ms"
trap - EXIT

t3=$(now_ms)
res="$(PGPASSWORD="$PW" PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p 15432 -U postgres -d postgres -Atc 'select version()')"
log "host psql 127.0.0.1:15432 in $(($(now_ms) - t3)) ms: $res"
log "OK"

#!/usr/bin/env bash
# Acceptance test of the Pulumi toolchain (after localenv/toolchain.sh), with plugin downloads disabled:
#   1. `pulumi plugin ls` lists kubernetes, postgresql and random at the pinned versions;
#   2. a temporary Python project on the clone's local backend: `pulumi up` creates a
#      random.RandomPassword, a random.RandomString and a Python dynamic resource, checks their outputs,
#      a second preview shows no changes, a one-policy pack passes and then blocks a violating change,
#      and the kubernetes plugin loads (preview of a Namespace against an unreachable API server);
#   3. with --postgres HOST:PORT (admin password in $PGPASSWORD, user $PGUSER or postgres): a
#      postgresql Provider, Role, Database, Grant (REVOKE ALL ON DATABASE FROM PUBLIC) and Extension are
#      created, checked with psql, updated and destroyed;
#   4. with --kube: a ConfigMap is created in namespace default of $KUBECONFIG's cluster (env.sh
#      points it at the local cluster), read back with kubectl, and destroyed.
# Prints "N passed, N failed" and exits non-zero on any failure. The stack is removed at the end.
set -euo pipefail

PG=""
KUBE=0
while (($#)); do
  case "$1" in
    --postgres)
      PG="$2"
      shift 2
      ;;
    --kube)
      KUBE=1
      shift
      ;;
    *)
      echo "usage: $0 [--postgres HOST:PORT] [--kube]" >&2
      exit 2
      ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=localenv/env.sh disable=SC1091
source "$here/../env.sh"
[[ -x "$POSTGRES_APPS_ROOT/.venv/bin/python" ]] || {
  echo "accept: no .venv: run localenv/venv.sh first" >&2
  exit 1
}
export PULUMI_PYTHON_CMD="$POSTGRES_APPS_ROOT/.venv/bin/python"

passed=0
failed=0
ok() {
  echo "PASS: $*"
  passed=$((passed + 1))
}
ko() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}
expect_eq() {
  if [[ "$3" == "$2" ]]; then ok "$1"; else ko "$1: expected '$2', got '$3'"; fi
}

work="$(mktemp -d)"
stack="accept-$$"
cleanup() {
  if [[ -f "$work/proj/Pulumi.yaml" ]]; then
    (cd "$work/proj" && pulumi destroy --yes --stack "$stack" >"$work/destroy.log" 2>&1 &&
      pulumi stack rm --yes --force --stack "$stack" >>"$work/destroy.log" 2>&1) ||
      echo "accept: cleanup of stack $stack failed (see $work/destroy.log)" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1. plugins
plugins="$(pulumi plugin ls 2>&1)"
for pv in "kubernetes $PULUMI_KUBERNETES_VERSION" "postgresql $PULUMI_POSTGRESQL_VERSION" \
  "random $PULUMI_RANDOM_VERSION"; do
  if grep -Eq "^${pv% *} +resource +${pv#* } " <<<"$plugins"; then
    ok "pulumi plugin ls lists $pv"
  else
    ko "pulumi plugin ls does not list $pv:"$'\n'"$plugins"
  fi
done

# 2. project
mkdir -p "$work/proj" "$work/policy"
cat >"$work/proj/Pulumi.yaml" <<'EOF'
name: toolchain-accept
runtime: python
description: acceptance test of the local Pulumi toolchain
EOF
cat >"$work/proj/__main__.py" <<'EOF'
import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

cfg = pulumi.Config()


class EchoProvider(ResourceProvider):
    def create(self, props):
        return CreateResult(id_="echo", outs={"who": props["who"], "greeting": "hello " + props["who"]})


class Echo(Resource):
    greeting: pulumi.Output[str]

    def __init__(self, name, who, opts=None):
        super().__init__(EchoProvider(), name, {"who": who, "greeting": None}, opts)


pw = random.RandomPassword("pw", length=32, special=False)
s = random.RandomString("s", length=12, min_upper=2, min_numeric=2, override_special="-_")
echo = Echo("echo", cfg.get("who") or "toolchain")
pulumi.export("pw_len", pw.result.apply(len))
pulumi.export("pw_alnum", pw.result.apply(lambda r: r.isalnum()))
pulumi.export("pw_value", pw.result)
pulumi.export("s", s.result)
pulumi.export("greeting", echo.greeting)
if cfg.get_bool("k8s"):
    prov = k8s.Provider("unreachable", kubeconfig=cfg.require("kubeconfig"))
    k8s.core.v1.Namespace("ns", metadata={"name": "accept"}, opts=pulumi.ResourceOptions(provider=prov))
EOF
cat >"$work/policy/PulumiPolicy.yaml" <<'EOF'
runtime: python
description: one-policy pack
EOF
cat >"$work/policy/__main__.py" <<'EOF'
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


def not_world(args, report_violation):
    if args.props.get("who") == "world":
        report_violation("who must not be world")


PolicyPack(
    name="toolchain-accept",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[ResourceValidationPolicy(name="not-world", description="who must not be world", validate=not_world)],
)
EOF

cd "$work/proj"
pulumi stack init "$stack" >"$work/init.log" 2>&1 || ko "stack init: $(cat "$work/init.log")"
start=$(date +%s%N)
if pulumi up --yes --skip-preview --stack "$stack" >"$work/up.log" 2>&1; then
  ok "pulumi up (RandomPassword, RandomString, dynamic resource) in $((($(date +%s%N) - start) / 1000000)) ms"
else
  ko "pulumi up failed:"$'\n'"$(tail -30 "$work/up.log")"
fi
outs="$(pulumi stack output --json --show-secrets --stack "$stack" 2>&1 || true)"
check_out() {
  if "$PULUMI_PYTHON_CMD" -c "import json,sys; o=json.loads(sys.argv[1]); assert $2, o" "$outs" 2>/dev/null; then
    ok "$1"
  else
    ko "$1: outputs $outs"
  fi
}
check_out "password: 32 alphanumeric characters" 'o["pw_len"] == 32 and o["pw_alnum"] is True'
check_out "string: 12 characters, >= 2 upper and >= 2 digits, specials only from '-_'" \
  'len(o["s"]) == 12 and sum(c.isupper() for c in o["s"]) >= 2 and sum(c.isdigit() for c in o["s"]) >= 2 and all(c.isalnum() or c in "-_" for c in o["s"])'
check_out "dynamic resource output" 'o["greeting"] == "hello toolchain"'
pw="$(pulumi stack output pw_value --show-secrets --stack "$stack" 2>/dev/null || true)"
if [[ ${#pw} -ne 32 ]]; then
  ko "cannot read the password output (got ${#pw} characters)"
elif pulumi stack export --stack "$stack" | grep -qF "$pw"; then
  ko "the RandomPassword result is plain in the state (must be a secret)"
else
  ok "the RandomPassword result is a secret in the state"
fi
if pulumi preview --expect-no-changes --stack "$stack" >"$work/preview.log" 2>&1; then
  ok "second preview: no changes"
else
  ko "second preview shows changes:"$'\n'"$(tail -20 "$work/preview.log")"
fi
if pulumi preview --stack "$stack" --policy-pack "$work/policy" >"$work/policy-ok.log" 2>&1; then
  ok "policy pack runs (python, through the language host)"
else
  ko "policy pack failed:"$'\n'"$(tail -20 "$work/policy-ok.log")"
fi
pulumi config set who world --stack "$stack"
if pulumi preview --stack "$stack" --policy-pack "$work/policy" >"$work/policy-ko.log" 2>&1; then
  ko "policy pack did not block a violating change"
elif grep -q "not-world" "$work/policy-ko.log"; then
  ok "policy pack blocks a violating change (mandatory policy not-world)"
else
  ko "preview failed for another reason:"$'\n'"$(tail -20 "$work/policy-ko.log")"
fi
pulumi config rm who --stack "$stack"
cat >"$work/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
EOF
pulumi config set k8s true --stack "$stack"
pulumi config set kubeconfig "$(cat "$work/kubeconfig")" --stack "$stack"
pulumi preview --stack "$stack" >"$work/k8s.log" 2>&1 || true
if grep -q "kubernetes:core/v1:Namespace" "$work/k8s.log" && ! grep -qi "no resource plugin\|could not find\|download" "$work/k8s.log"; then
  ok "kubernetes plugin loads (Namespace previewed against an unreachable cluster)"
else
  ko "kubernetes plugin did not load:"$'\n'"$(tail -20 "$work/k8s.log")"
fi
pulumi config rm k8s --stack "$stack"

# 3. postgresql
if [[ -n "$PG" ]]; then
  pghost="${PG%:*}" pgport="${PG##*:}"
  pguser="${PGUSER:-postgres}"
  app="accept_$$"
  cat >"$work/proj/__main__.py" <<EOF
import pulumi
import pulumi_postgresql as postgresql

cfg = pulumi.Config()
prov = postgresql.Provider("pg", host="$pghost", port=$pgport, username="$pguser",
                           password=cfg.require_secret("pgpassword"), sslmode="disable", superuser=True)
o = pulumi.ResourceOptions(provider=prov)
role = postgresql.Role("role", name="$app", login=True, password=cfg.require_secret("apppassword"),
                       connection_limit=int(cfg.get("limit") or 5), opts=o)
db = postgresql.Database("db", name="$app", owner=role.name, opts=o)
revoke = postgresql.Grant("revoke-public", database=db.name, role="public", object_type="database",
                          privileges=[], opts=o)
ext = postgresql.Extension("ext", name="pgcrypto", database=db.name, opts=o)
pulumi.export("db", db.name)
pulumi.export("owner", db.owner)
pulumi.export("ext_version", ext.version)
EOF
  pulumi config set --secret pgpassword "${PGPASSWORD:?set PGPASSWORD for --postgres}" --stack "$stack"
  pulumi config set --secret apppassword "app-pw-$$" --stack "$stack"
  psql_admin() { PGPASSWORD="$PGPASSWORD" psql -h "$pghost" -p "$pgport" -U "$pguser" -d postgres -Atc "$1"; }
  if pulumi up --yes --skip-preview --stack "$stack" >"$work/pg-up.log" 2>&1; then
    ok "postgresql: pulumi up (Provider, Role, Database, Grant, Extension)"
  else
    ko "postgresql: pulumi up failed:"$'\n'"$(tail -30 "$work/pg-up.log")"
  fi
  expect_eq "postgresql: role exists with LOGIN and connection limit 5" "true5" \
    "$(psql_admin "SELECT rolcanlogin::text || rolconnlimit FROM pg_roles WHERE rolname = '$app'")"
  expect_eq "postgresql: database owned by the role" "$app" \
    "$(psql_admin "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$app'")"
  expect_eq "postgresql: CONNECT revoked from PUBLIC" "f" \
    "$(psql_admin "SELECT has_database_privilege('public', '$app', 'CONNECT')")"
  expect_eq "postgresql: the role logs in with its password; pgcrypto installed" "1" \
    "$(PGPASSWORD="app-pw-$$" psql -h "$pghost" -p "$pgport" -U "$app" -d "$app" -Atc \
      "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'" 2>&1)"
  pulumi config set limit 7 --stack "$stack"
  if pulumi up --yes --skip-preview --stack "$stack" >"$work/pg-up2.log" 2>&1 &&
    [[ "$(psql_admin "SELECT rolconnlimit FROM pg_roles WHERE rolname = '$app'")" == "7" ]] &&
    grep -q "1 updated" "$work/pg-up2.log"; then
    ok "postgresql: connection limit updated in place"
  else
    ko "postgresql: update failed:"$'\n'"$(tail -20 "$work/pg-up2.log")"
  fi
  if pulumi preview --expect-no-changes --stack "$stack" >"$work/pg-preview.log" 2>&1 &&
    pulumi refresh --yes --expect-no-changes --stack "$stack" >"$work/pg-refresh.log" 2>&1; then
    ok "postgresql: preview and refresh show no drift"
  else
    ko "postgresql: drift after up:"$'\n'"$(tail -20 "$work/pg-preview.log" "$work/pg-refresh.log")"
  fi
  if pulumi destroy --yes --stack "$stack" >"$work/pg-destroy.log" 2>&1 &&
    [[ -z "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$app' UNION ALL SELECT 1 FROM pg_database WHERE datname = '$app'")" ]]; then
    ok "postgresql: destroy drops the database and the role"
  else
    ko "postgresql: destroy failed:"$'\n'"$(tail -20 "$work/pg-destroy.log")"
  fi
fi

# 4. kubernetes, for real
if ((KUBE)); then
  cm="toolchain-accept-$$"
  cat >"$work/proj/__main__.py" <<PY
import pulumi
import pulumi_kubernetes as k8s

cm = k8s.core.v1.ConfigMap("cm", metadata={"name": "$cm", "namespace": "default"}, data={"who": "toolchain"})
pulumi.export("uid", cm.metadata.uid)
PY
  if pulumi up --yes --skip-preview --stack "$stack" >"$work/k8s-up.log" 2>&1; then
    ok "kubernetes: pulumi up (ConfigMap default/$cm)"
  else
    ko "kubernetes: pulumi up failed:"$'\n'"$(tail -20 "$work/k8s-up.log")"
  fi
  expect_eq "kubernetes: kubectl reads the ConfigMap back" "toolchain" \
    "$(kubectl get configmap -n default "$cm" -o jsonpath='{.data.who}' 2>&1)"
  if pulumi destroy --yes --stack "$stack" >"$work/k8s-destroy.log" 2>&1 &&
    ! kubectl get configmap -n default "$cm" >/dev/null 2>&1; then
    ok "kubernetes: destroy deletes the ConfigMap"
  else
    ko "kubernetes: destroy failed:"$'\n'"$(tail -20 "$work/k8s-destroy.log")"
  fi
fi

echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Debian packages the tests and the local environment use on the host, installed when missing:
# PostgreSQL 15 server binaries (integration tier, host PostgreSQL), busybox (the probe script is
# also tested under busybox sh, as in postgres:*-alpine), openssl (local cluster certificates).
# The node's own packages (containerd, runc, CNI, ...) are installed by localenv/node/node.sh.
set -euo pipefail
want=()
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || want+=(postgresql-15)
command -v psql >/dev/null || want+=(postgresql-client-15)
command -v busybox >/dev/null || want+=(busybox)
command -v openssl >/dev/null || want+=(openssl)
[[ ${#want[@]} -eq 0 ]] && exit 0
echo "packages: installing ${want[*]}"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
fi

#!/usr/bin/env bash
# The README's first command (`make up`): whole set-up on a fresh machine, then the main job.
#   venv → Pulumi toolchain (installed, or built from Go modules and cached) →
#   local Kubernetes cluster with PostgreSQL shaped like the Bitnami chart →
#   `pulumi up` on stack `local` (local file backend), which provisions every app and verifies it.
# With STACK=<name> (e.g. STACK=dev) it skips the local cluster and runs against that stack's
# cluster, as configured in Pulumi.<name>.yaml.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
stack="${STACK:-local}"

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

step "Debian packages and Python environment"
./localenv/packages.sh || die "could not install the Debian packages the tests need"
./localenv/venv.sh || die "could not create .venv"
step "Pulumi toolchain"
./localenv/toolchain.sh || die "the Pulumi toolchain could not be built or found"
if [[ "$stack" == local ]]; then
  step "local cluster (control plane, node, PostgreSQL)"
  ./localenv/cluster.sh up || die "the local cluster could not be started"
fi
# shellcheck source=localenv/env.sh disable=SC1091
source ./localenv/env.sh

# Pulumi writes the stack's encryption salt into Pulumi.<stack>.yaml on first use. For `local` it
# belongs to this clone's random passphrase: a git clean filter keeps it out of commits.
git config filter.local-stack-salt.clean "sed -e '/^encryptionsalt:/d'"
git config filter.local-stack-salt.smudge cat

step "pulumi up --stack $stack"
pulumi stack select "$stack" >/dev/null 2>&1 || pulumi stack init "$stack" >/dev/null
pulumi up --stack "$stack" --yes --diff
# The salt line changes the file's size, so git would list it as modified although the cleaned
# content is the committed one: refresh the index entry only in exactly that case.
cfg="Pulumi.$stack.yaml"
if [[ "$stack" == local && -f "$cfg" ]] &&
  [[ "$(git hash-object --path="$cfg" "$cfg")" == "$(git ls-files -s "$cfg" | cut -d' ' -f2)" ]]; then
  git add "$cfg"
fi

step "apps and their verification results (stack output 'apps')"
pulumi stack output --stack "$stack" apps --json

#!/usr/bin/env bash
# Creates .venv with the program's and the tests' Python dependencies; a no-op when they are current.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
stamp=.venv/.requirements-stamp
reqs=(requirements.txt requirements-dev.txt)
[[ -f policies/requirements.txt ]] && reqs+=(policies/requirements.txt)
want="$(cat "${reqs[@]}" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ -x .venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
python3 -m venv .venv
for req in "${reqs[@]}"; do
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
done
echo "$want" > "$stamp"
echo "venv: .venv ready ($(.venv/bin/python --version))"

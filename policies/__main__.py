"""The postgres-apps policy pack: what `pulumi preview/up --policy-pack policies` runs.

Building the `PolicyPack` starts the analyzer's gRPC server and blocks; the validators live in
`postgres_apps_policies` (importable without side effects, unit-tested directly).
"""

# The engine runs this file with the pack's directory on sys.path: a top-level import, whatever the
# directory is called once the pack is published.
from postgres_apps_policies import (  # type: ignore[import-not-found, unused-ignore]
    PACK_NAME,
    build_policies,
)
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=build_policies(),
    description="Least privilege, deletion safety and credential placement for postgres-apps.",
)

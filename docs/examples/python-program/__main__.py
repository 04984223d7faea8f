"""A platform team's own Pulumi program using postgres-apps (README: use it from your program)."""

import pulumi

from postgres_apps import PostgresApps

databases = PostgresApps(
    "postgres-apps",
    {"apps": ["app-test", {"name": "n8n", "profile": "n8n"}], "postgres": {"admin_port": 15432}},
)
pulumi.export("apps", databases.apps)
pulumi.export("managedApps", databases.managed_apps)  # read back by the next run's removal check
pulumi.export("retirementCopies", databases.retirement_copies)  # verified dumps taken before drops

"""Component provider of the postgres-apps package (`pulumi package add <clone>/provider`).

Pulumi's Python component provider host serves `postgres_apps.hosted.PostgresApps` as
`postgres-apps:index:PostgresApps`; the schema is inferred from its annotations.
"""

from pulumi.provider.experimental import component_provider_host

from postgres_apps.hosted import PostgresApps, package_version

if __name__ == "__main__":
    component_provider_host(
        components=[PostgresApps], name="postgres-apps", version=package_version()
    )

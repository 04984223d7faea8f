"""Reusable Pulumi components of postgres-apps (config, namespace, admin access, app database, verification)."""

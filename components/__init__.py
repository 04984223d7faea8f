"""Reusable Pulumi components: config, namespace, admin access, app database, verification."""

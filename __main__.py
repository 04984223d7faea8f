"""The postgres-apps stack: stack config → `PostgresApps` → stack outputs (never a secret in plain).

The admin provider stays at the stack's root, where 0.1.x made it (its URN is every role's,
database's and grant's provider reference); the component takes it through `opts.providers`.
"""

import pulumi

from postgres_apps.admin import admin_access, admin_password
from postgres_apps.apps import PostgresApps, args_from_config, settings_from_args
from postgres_apps.config import raw_config
from postgres_apps.inventory import OUTPUT_NAME as UNMANAGED
from postgres_apps.inventory import scope_of
from postgres_apps.preflight import BUDGET_OUTPUT_NAME as BUDGET
from postgres_apps.preflight import connection_budget
from postgres_apps.retention import OUTPUT_NAME as MANAGED
from postgres_apps.retirement import OUTPUT_NAME as COPIES

args = args_from_config(raw_config())
settings = settings_from_args(args)
pg = settings.postgres
admin = admin_access(pg, admin_password(pg), scope_of(settings), budget=connection_budget(settings))
stack = PostgresApps("postgres-apps", args, pulumi.ResourceOptions(providers=[admin.provider]))
pulumi.export("apps", stack.apps)
pulumi.export("postgres", stack.postgres)
pulumi.export("verificationMode", stack.verification_mode)
pulumi.export("serverHardening", stack.server_hardening)
pulumi.export(BUDGET, stack.connection_budget)
pulumi.export(MANAGED, stack.managed_apps)
pulumi.export(COPIES, stack.retirement_copies)
pulumi.export(UNMANAGED, admin.unmanaged)

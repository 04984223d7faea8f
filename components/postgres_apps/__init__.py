"""postgres-apps: one PostgreSQL database, role and Secret per app, verified after every deploy.

Install with `pip install postgres-apps` (or a clone's path); the stack program in this repository
(`__main__.py`) is one user of it. The public API is listed in docs/api.md.
"""

__version__ = "0.2.0"

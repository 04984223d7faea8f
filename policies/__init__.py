"""The postgres-apps CrossGuard policy pack (a package only so the tests and mypy can import it;
the engine runs `__main__.py` with this directory on sys.path)."""

"""Benchmarks of the program against the raw-SQL floor (see docs/benchmarks.md)."""

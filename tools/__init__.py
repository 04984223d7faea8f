"""Operator and CI helpers that are not part of the deployed program."""

"""Tiny random models of the real architectures, built offline for tests and `models check --tiny`."""

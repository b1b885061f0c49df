"""Benchmarks: scripts that measure and print figures (``medbuilder bench ...``)."""

"""Fixtures for the integration tests: the real SCEP server (see tests/scep_fixture.py)."""

from scep_fixture import scep_server  # noqa: F401

"""What a test does when a Debian package it needs is missing: it is skipped with the apt-get
line that installs the package, except where ``CERTFLEET_TESTS_REQUIRE_DEBIAN=1`` (``.ci/run``
sets it after installing them), where a missing package fails the test: CI never skips."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE = "CERTFLEET_TESTS_REQUIRE_DEBIAN"


def missing(reason: str) -> NoReturn:
    """Skip (or, where the packages are required, fail) the test for ``reason``."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason} ({REQUIRE}=1: a missing package is an error here)",
                    pytrace=False)
    pytest.skip(reason)


def require(program: str, package: str) -> str:
    """The path of ``program``; the test is skipped (see :func:`missing`) where Debian's
    ``package`` that brings it is not installed."""
    path = shutil.which(program)
    if path is None:
        missing(f"needs Debian's {package} ({program} is missing): "
                f"apt-get install -y --no-install-recommends {package}")
    return path


def openssl() -> str:
    """The openssl command line tool (interop checks on what certfleet makes)."""
    return require("openssl", "openssl")

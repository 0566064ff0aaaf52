"""What every transport shares (fleet.xapi._config): the one Retry-After reader, the backoff,
TLS contexts that follow a CA file changing under a running process, the user agent."""

from __future__ import annotations

import email.utils
import os
import ssl
from pathlib import Path

import pytest
import trustme

from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.plans.install import certfleet_trust
from certfleet.fleet.xapi._config import (
    USER_AGENT,
    Backoff,
    RetryPolicy,
    bracket_host,
    retry_after_seconds,
    ssl_context_for,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("1.5", 1.5),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # a date gone by: no wait
    ("rand(30),add(30)", None),
    ("-5", None),
    ("", None),
    (None, None),
    ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
])
def test_retry_after_is_read_one_way(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


def test_a_retry_after_lengthens_the_backoff_up_to_four_caps() -> None:
    policy = RetryPolicy(attempts=3, base=0.001, cap=1.0)
    assert policy.wait(0, "2") == 2.0
    assert policy.wait(0, "3600") == 4.0
    assert policy.wait(0, "soon") <= 0.001


async def test_backoff_counts_attempts_and_sleeps_between_them() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(RetryPolicy(attempts=3, base=0.5, cap=8.0), sleep=sleep)
    tries = 1
    while backoff.more:
        await backoff.pause()
        tries += 1
    assert tries == 3 and len(slept) == 2
    assert 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0


def test_user_agent_carries_the_package_version() -> None:
    name, _, version = USER_AGENT.partition("/")
    assert name == "certfleet" and version and version != "0.1"


def test_ipv6_literals_are_bracketed() -> None:
    assert bracket_host("::1") == "[::1]"
    assert bracket_host("[::1]") == "[::1]"
    assert bracket_host("room-1.example") == "room-1.example"


def _device(tmp_path: Path, ca_file: Path) -> Device:
    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {username: admin, password: 'env:CF_TEST_PW'}\n"
                   f"devices:\n  room-1: {{host: 127.0.0.1, verify: 'ca:{ca_file}'}}\n")
    return load_inventory(inv).devices["room-1"]


def test_a_ca_file_that_changes_while_the_process_runs_is_read_again(tmp_path: Path) -> None:
    first, second = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "cas.pem"
    ca_file.write_bytes(first.cert_pem.bytes())
    device = _device(tmp_path, ca_file)
    before = ssl_context_for(device.verify)
    assert ssl_context_for(device.verify) is before  # built once while the file stays
    assert len(certfleet_trust(device)) == 1
    ca_file.write_bytes(first.cert_pem.bytes() + second.cert_pem.bytes())
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    after = ssl_context_for(device.verify)
    assert after is not before
    assert len(after.get_ca_certs()) == 2 and len(before.get_ca_certs()) == 1
    assert len(certfleet_trust(device)) == 2
    assert after.verify_mode == ssl.CERT_REQUIRED and after.check_hostname

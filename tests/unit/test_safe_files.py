"""Files the user names — inventory, `file:` secret, PEM arguments, the local CA's files — are
read by one safe reader: a FIFO or a device is refused at once (no hang, no MemoryError), a
file over the cap is refused, each with exit 2 and a message that names the path."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from certfleet.fleet.files import FileTooLargeError, NotARegularFileError, read_file


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A read that blocks (on a FIFO) fails the test after 10 s instead of hanging it."""
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("blocked reading a file")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "a-fifo"
    os.mkfifo(path, 0o600)
    return path


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    assert read_file(path, limit=5000) == b"x" * 5000


def test_a_fifo_a_device_a_directory_and_a_large_file_are_refused(
    tmp_path: Path, fifo: Path
) -> None:
    with pytest.raises(NotARegularFileError, match="FIFO"):
        read_file(fifo)
    with pytest.raises(NotARegularFileError, match="character device"):
        read_file("/dev/zero")
    with pytest.raises(IsADirectoryError):
        read_file(tmp_path)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5001)
    with pytest.raises(FileTooLargeError, match="5000 bytes limit") as info:
        read_file(big, limit=5000)
    assert info.value.filename == str(big)


def inventory_with(tmp_path: Path, password: str) -> Path:
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"defaults: {{username: admin, password: '{password}', verify: insecure}}\n"
                   "devices:\n  room-1: {host: 127.0.0.1, port: 9}\n")
    return inv


def refused_fast(cli: Any, *args: str, path: str) -> Any:
    started = time.monotonic()
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert path in result.output
    assert "Traceback" not in result.output and "MemoryError" not in result.output
    assert time.monotonic() - started < 5
    return result


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_an_inventory_that_is_not_a_file_is_exit_2(kind: str, fifo: Path, cli: Any) -> None:
    path = str(fifo) if kind == "fifo" else kind
    result = refused_fast(cli, "status", "-i", path, path=path)
    assert "not a regular file" in result.output


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_file_secret_that_is_not_a_file_is_exit_2(kind: str, fifo: Path,
                                                      tmp_path: Path, cli: Any) -> None:
    path = str(fifo) if kind == "fifo" else kind
    inv = inventory_with(tmp_path, f"file:{path}")
    result = refused_fast(cli, "status", "-i", str(inv), path=path)
    assert "not a regular file" in result.output


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_pem_argument_that_is_not_a_file_is_exit_2(kind: str, fifo: Path,
                                                      tmp_path: Path, cli: Any) -> None:
    path = str(fifo) if kind == "fifo" else kind
    secret = tmp_path / "pw"
    secret.write_text("pw-1234\n")
    secret.chmod(0o600)
    inv = inventory_with(tmp_path, f"file:{secret}")
    result = refused_fast(cli, "push-ca", "-i", str(inv), path, path=path)
    assert "not a regular file" in result.output


def test_a_local_ca_file_that_is_a_fifo_is_exit_2(tmp_path: Path, cli: Any) -> None:
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    os.mkfifo(ca_dir / "ca.pem", 0o600)
    result = refused_fast(cli, "ca", "show", "--dir", str(ca_dir), path=str(ca_dir / "ca.pem"))
    assert "not a regular file" in result.output


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_push_cert_and_ca_sign_arguments_that_are_not_files_are_exit_2(
    kind: str, fifo: Path, tmp_path: Path, cli: Any
) -> None:
    path = str(fifo) if kind == "fifo" else kind
    secret = tmp_path / "pw"
    secret.write_text("pw-1234\n")
    secret.chmod(0o600)
    inv = inventory_with(tmp_path, f"file:{secret}")
    result = refused_fast(cli, "push-cert", "-i", str(inv), "--purpose", "HTTPS", "--cert",
                          path, path=path)
    assert "not a regular file" in result.output
    result = refused_fast(cli, "ca", "sign", path, "--dir", str(tmp_path / "ca"), path=path)
    assert "not a regular file" in result.output

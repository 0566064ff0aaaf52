"""The state folder: the sim CA, the admin password and one `state.json` per device.
Every write is atomic (temporary file + os.replace); files holding keys or secrets are
mode 0600."""

from __future__ import annotations

import itertools
import json
import os
import secrets
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .certs import cert_pem, create_sim_ca, key_pem, load_key_pem

STATE_VERSION = 1
PRIVATE = 0o600


_temporary_names = itertools.count()
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` so readers see the old or the new file, never half of one.

    The temporary file beside it is created exclusively, mode 0600, under a name unique to
    this process (pid and a counter: `tempfile.mkstemp`'s random names cost more than the
    write itself, once per change of a device's state). The folder is made only when it is
    missing (found by the create failing), not asked for on every write."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_temporary_names)}.tmp")
        try:
            fd = os.open(tmp, _CREATE, PRIVATE)
            break
        except FileExistsError:  # left behind by an earlier process with our pid
            continue
        except FileNotFoundError:
            if path.parent.is_dir():
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def ca_pem_path(self) -> Path:
        return self.root / "sim-ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "sim-ca.key"

    @property
    def password_path(self) -> Path:
        return self.root / "admin-password"

    def device_dir(self, name: str) -> Path:
        return self.root / "devices" / name

    def ensure_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Load the sim CA, or create it on first start."""
        if self.ca_pem_path.exists() and self.ca_key_path.exists():
            cert = x509.load_pem_x509_certificate(self.ca_pem_path.read_bytes())
            key = load_key_pem(self.ca_key_path.read_text(encoding="ascii"))
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.ca_key_path}: expected an EC private key")
            return cert, key
        cert, key = create_sim_ca()
        write_atomic(self.ca_key_path, key_pem(key).encode("ascii"), PRIVATE)
        write_atomic(self.ca_pem_path, cert_pem(cert).encode("ascii"))
        return cert, key

    def ensure_password(self) -> str:
        if self.password_path.exists():
            password = self.password_path.read_text(encoding="utf-8").strip()
            if password:
                return password
        password = secrets.token_urlsafe(18)
        write_atomic(self.password_path, (password + "\n").encode("utf-8"), PRIVATE)
        return password

    def load_device(self, name: str) -> dict[str, Any] | None:
        path = self.device_dir(name) / "state.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: unsupported state version {data.get('version')!r}")
        return data

    def save_device(self, name: str, data: dict[str, Any]) -> None:
        payload = {"version": STATE_VERSION, **data}
        # one line: without `indent`, json's C encoder writes it (indented, the pure-Python
        # encoder took longer than the write itself; three saves per rotated device)
        text = json.dumps(payload, sort_keys=True)
        write_atomic(self.device_dir(name) / "state.json", text.encode("utf-8"), PRIVATE)

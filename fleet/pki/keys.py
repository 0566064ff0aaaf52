"""fleet.pki.keys — private keys: generate them (on all cores), serialize, load, write safely.

Key kinds are the inventory's: ``rsa-2048``, ``rsa-3072``, ``rsa-4096``, ``ec-p256`` and
``ec-p384``. :func:`generate_key` makes one key in the calling process; :class:`KeyFactory` makes
them in a pool of worker processes (one per core) behind an ``async`` method, so that RSA key
generation — tens to hundreds of milliseconds of CPU per key — runs beside the network work of
the asyncio runner instead of stalling it. Keys travel from the workers as PKCS#8 DER and are
loaded in the parent.

Key files are PKCS#8 PEM, encrypted with the best available algorithm when a passphrase is
given, and written by :func:`write_private_key`: created with mode 0600 under a temporary name
and renamed into place, so a key is never readable by anyone else, not even for an instant, and
never half written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import multiprocessing.forkserver
import os
import re
import secrets as _random
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)

from ..errors import InputError, PemError
from . import pkcs8

if TYPE_CHECKING:
    from ..secrets import Secret

__all__ = [
    "KEY_KINDS",
    "KeyFactory",
    "KeyHolder",
    "PrivateKey",
    "PublicKey",
    "describe_key",
    "generate_key",
    "key_kind",
    "key_to_pem",
    "load_key_pem",
    "public_key_id",
    "same_public_key",
    "write_atomic",
    "write_private_key",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

KEY_KINDS: Final = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")

_RSA_BITS: Final = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}
_EC_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "ec-p256": ec.SECP256R1,
    "ec-p384": ec.SECP384R1,
}
_CURVE_KINDS: Final = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}

_PEM_BLOCK: Final = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL
)
_LOADABLE_LABELS: Final = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY",
                           "EC PRIVATE KEY")
_OTHER_KEY_LABELS: Final = ("DSA PRIVATE KEY", "OPENSSH PRIVATE KEY")


def _check_kind(kind: str) -> str:
    if kind not in KEY_KINDS:
        raise InputError(f"unknown key type {kind!r}; use one of: {', '.join(KEY_KINDS)}")
    return kind


def generate_key(kind: str) -> PrivateKey:
    """A new private key of ``kind`` (one of :data:`KEY_KINDS`), made in this process."""
    _check_kind(kind)
    if kind in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[kind])
    return ec.generate_private_key(_EC_CURVES[kind]())


def key_kind(key: PrivateKey | PublicKey) -> str:
    """The kind of a key as certfleet names it (``rsa-2048``, ``ec-p256``, ...)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return _CURVE_KINDS.get(key.curve.name, f"ec-{key.curve.name}")


# ------------------------------------------------------------------------- key factory


def _generate_der(kind: str) -> tuple[int, bytes]:
    """Worker side of :class:`KeyFactory`: (worker pid, the new key as PKCS#8 DER)."""
    key = generate_key(kind)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return os.getpid(), der


def _default_start_method() -> str:
    # forkserver: workers are forked from a clean single-threaded server, not from a parent
    # that runs an event loop and threads (fork there can deadlock); spawn where it is missing.
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def _exit_with(owner: int) -> None:
    """In a key worker: exit when the process that owns the pool is gone. A pool's workers
    outlive a parent killed with SIGKILL (each holds the ends of the pool's queues, so none
    ever reads end-of-file) and keep the forkserver alive with them; this reaps both."""
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if not _alive(owner):
                os._exit(0)

    threading.Thread(target=watch, name="certfleet-owner-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            state = stat_file.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # the pid belongs to someone else now: ours is gone
            return False
        return True


class KeyFactory:
    """Generates private keys in a pool of worker processes, one per core by default.

    ``await factory.generate("rsa-2048")`` hands the work to a worker and gives the event loop
    back while it runs. The pool starts on first use and stops with :meth:`close` (or at the end
    of a ``with`` / ``async with`` block).
    """

    def __init__(self, workers: int | None = None, *, start_method: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError("KeyFactory needs at least one worker")
        self.workers: int = workers or os.cpu_count() or 1
        self.start_method: str = start_method or _default_start_method()
        #: the pids of the processes that made keys so far (for diagnostics and tests)
        self.worker_pids: set[int] = set()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("this KeyFactory is closed")
        if self._pool is None:
            if self.start_method == "forkserver":
                multiprocessing.forkserver.set_forkserver_preload([__name__])
            context = multiprocessing.get_context(self.start_method)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context,
                initializer=_exit_with, initargs=(os.getpid(),),
            )
        return self._pool

    async def generate(self, kind: str) -> PrivateKey:
        """A new private key of ``kind``, made in a worker process."""
        _check_kind(kind)
        loop = asyncio.get_running_loop()
        pool = self._executor()
        try:
            pid, der = await loop.run_in_executor(pool, _generate_der, kind)
        except BrokenProcessPool:
            # a worker died (killed, out of memory): start a fresh pool and try once more
            self._discard_pool(pool)
            pool = self._executor()
            try:
                pid, der = await loop.run_in_executor(pool, _generate_der, kind)
            except BrokenProcessPool as exc:
                self._discard_pool(pool)
                raise RuntimeError(
                    "the key worker processes keep dying; a script that uses KeyFactory must "
                    "start its work under `if __name__ == '__main__':`"
                ) from exc
        self.worker_pids.add(pid)
        # Our own worker made this key a moment ago: skip OpenSSL's RSA consistency check,
        # which costs as much CPU as making the key (and would run here, on one core).
        key = serialization.load_der_private_key(
            der, password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"a key worker returned a {type(key).__name__}")  # pragma: no cover
        return key

    def _discard_pool(self, broken: ProcessPoolExecutor) -> None:
        """Drop ``broken`` (once, however many generations saw it break)."""
        if self._pool is broken:
            self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (pending generations are cancelled). Safe to call twice."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> KeyFactory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> KeyFactory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ------------------------------------------------------------------- PEM in and out


def key_to_pem(key: CertificateIssuerPrivateKeyTypes, passphrase: Secret | None, *,
               one_time: bool = False) -> bytes:
    """PKCS#8 PEM; encrypted when a passphrase is given (PBES2: PBKDF2-HMAC-SHA256 at
    600,000 iterations, AES-256-CBC — see :mod:`fleet.pki.pkcs8`). ``one_time``: the
    passphrase is random, made for one trip to a device; the device gets a light KDF."""
    if passphrase is None:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pkcs8.encrypt(der, passphrase.reveal().encode("utf-8"), one_time=one_time)


def load_key_pem(data: bytes, passphrase: Secret | None, *, source: str,
                 own_key: bool = False) -> PrivateKey:
    """The one private key in ``data`` (a key file, or a bundle with certificates and a key).
    ``own_key``: a key certfleet made itself and kept encrypted in its own journal, so
    OpenSSL's RSA consistency check (primality tests: as much CPU as making the key) is
    skipped; every key from anywhere else is checked.

    PemError naming ``source`` when there is no key or more than one, when the key is encrypted
    and no passphrase was given, when the passphrase is wrong (the passphrase is never quoted),
    or when the key is not an RSA or EC key.
    """
    blocks = [m for m in _PEM_BLOCK.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")]
    if not blocks:
        raise PemError("holds no private key (no PEM PRIVATE KEY block)", file=source)
    if len(blocks) > 1:
        raise PemError(f"holds {len(blocks)} private keys; it must hold one", file=source)
    block = blocks[0]
    label = block.group(1).decode("ascii", "replace")
    if label in _OTHER_KEY_LABELS or label not in _LOADABLE_LABELS:
        raise PemError(f"holds a {label}; certfleet reads PKCS#8 or PKCS#1/SEC1 PEM keys",
                       file=source)
    pem = block.group(0)
    encrypted = label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in pem
    if encrypted and passphrase is None:
        raise PemError("the private key is encrypted; give its passphrase", file=source)
    password = passphrase.reveal().encode("utf-8") if encrypted and passphrase else None
    try:
        # certfleet's own form first (its derived keys are kept: hundreds of journal keys
        # under one passphrase cost one derivation); anything else through cryptography
        der = pkcs8.decrypt(pem, password) if password and label.startswith("ENCRYPTED") \
            else None
        if der is not None:
            key = serialization.load_der_private_key(
                der, password=None, unsafe_skip_rsa_key_validation=own_key and encrypted)
        else:
            key = serialization.load_pem_private_key(pem, password=password)
    except ValueError as exc:
        if encrypted:
            raise PemError(
                "the private key cannot be decrypted: wrong passphrase", file=source
            ) from None
        raise PemError(f"the private key does not decode: {exc}", file=source) from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise PemError(f"the private key cannot be read: {exc}", file=source) from None
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    kind = "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else (
        "Ed448" if isinstance(key, ed448.Ed448PrivateKey) else type(key).__name__
    )
    raise PemError(f"holds an {kind} key; RoomOS devices take RSA or EC keys", file=source)


# ----------------------------------------------------------------- comparing keys


#: what the key helpers accept: a key (private or public), a certificate or a CSR
KeyHolder: TypeAlias = (
    PrivateKeyTypes | PublicKeyTypes | x509.Certificate | x509.CertificateSigningRequest
)


def _public(item: KeyHolder) -> PublicKeyTypes:
    if isinstance(item, x509.Certificate | x509.CertificateSigningRequest):
        return item.public_key()
    if hasattr(item, "public_key"):
        public: PublicKeyTypes = item.public_key()
        return public
    return item


def _spki(item: KeyHolder) -> bytes:
    return _public(item).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_id(key: KeyHolder) -> str:
    """SHA-256 of the SubjectPublicKeyInfo, hex: names a key pair without showing the key.

    ``key`` is a private key, a public key, a certificate or a CSR.
    """
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_spki(key))
    return digest.finalize().hex()


def same_public_key(a: KeyHolder, b: KeyHolder) -> bool:
    """Do two keys, certificates or CSRs (any mix) hold the same public key?"""
    return _spki(a) == _spki(b)


def describe_key(key: KeyHolder) -> str:
    """``RSA-2048`` / ``EC secp256r1`` / ``Ed25519`` ..., and the start of its SPKI SHA-256."""
    public = _public(key)
    if isinstance(public, rsa.RSAPublicKey):
        what = f"RSA-{public.key_size}"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        what = f"EC {public.curve.name}"
    elif isinstance(public, ed25519.Ed25519PublicKey):
        what = "Ed25519"
    else:
        what = type(public).__name__
    return f"{what}, SPKI SHA-256 {public_key_id(public)[:16]}…"


# ------------------------------------------------------------------------- files


def write_atomic(path: str | Path, data: bytes, *, mode: int = 0o644,
                 overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` as a whole or not at all, with exactly ``mode``.

    The bytes go to a temporary file in the same folder, created with ``O_CREAT|O_EXCL`` and
    mode 0600 and then chmod-ed to ``mode`` before anything is written (so the umask cannot
    widen or narrow it), flushed to disk, and renamed over ``path``. With ``overwrite=False``
    an existing ``path`` is a FileExistsError and is left alone.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{_random.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_exclusive(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _link_exclusive(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists (FileExistsError then)."""
    try:
        os.link(tmp, target)  # atomic: fails if anything is at target
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_private_key(path: str | Path, pem: bytes, *, overwrite: bool = True) -> None:
    """Write a key file: mode 0600 from its first byte to its last, replaced atomically."""
    write_atomic(path, pem, mode=0o600, overwrite=overwrite)

"""Per-device TLS: the listening context picks the device's current server certificate
on every handshake (through `sni_callback`, which OpenSSL calls even without SNI), so a
newly activated HTTPS certificate is presented from the next handshake on.

The context with the chain is rebuilt only when what the server presents changed (a change
to another certificate of the store, or to the store's other purposes, keeps it): a real
device does not reload its web server's identity for every certificate command, and the
rebuild (a new SSL context, the key parsed again) was a sixth of the simulator's CPU in a
rotation."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

# Returns the PEM text (leaf, chain, key) the device should present now.
BundleSource = Callable[[], str]
# Returns what names that bundle: equal (==) identities give the same bundle text.
IdentitySource = Callable[[], object]


# memfd_create (Linux) and /proc/self/fd, through which OpenSSL opens the memory file by name
_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class DeviceTLS:
    """Holds one small listening context per device and, built lazily on the first
    handshake after a change, one context with the current certificate chain."""

    def __init__(
        self, bundle: BundleSource, workdir: Path, identity: IdentitySource | None = None
    ) -> None:
        self._bundle = bundle
        self._identity = identity
        self._workdir = workdir
        self._listening: ssl.SSLContext | None = None
        self._current: ssl.SSLContext | None = None
        self._current_identity: object = None
        self._stale = True

    def listening_context(self) -> ssl.SSLContext:
        if self._listening is None:
            context = _server_context()
            context.sni_callback = self._pick_certificate
            self._listening = context
        return self._listening

    def invalidate(self) -> None:
        """The certificates changed: the next handshake loads the served one if it is not the
        one loaded (without an identity source: loads it in any case)."""
        self._stale = True

    def current_context(self) -> ssl.SSLContext:
        if self._stale or self._current is None:
            identity = self._identity() if self._identity is not None else None
            if self._current is None or identity is None or identity != self._current_identity:
                context = _server_context()
                self._load_chain(context, self._bundle())
                self._current, self._current_identity = context, identity
            self._stale = False
        return self._current

    def _pick_certificate(
        self,
        ssl_object: ssl.SSLObject | ssl.SSLSocket,
        server_name: str | None,
        listening: ssl.SSLContext,
    ) -> int | None:
        ssl_object.context = self.current_context()
        return None

    def _load_chain(self, context: ssl.SSLContext, bundle: str) -> None:
        # load_cert_chain reads files only: on Linux an anonymous memory file of this process
        # (memfd: the key never reaches a disk, and no folder entry is made and removed, a
        # sixth of a context's build), elsewhere a private temporary file, removed at once.
        if _MEMFD:
            fd = os.memfd_create("roomsim-tls", os.MFD_CLOEXEC)
            try:
                view = memoryview(bundle.encode("ascii"))
                while view:
                    view = view[os.write(fd, view):]
                context.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            return
        self._workdir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".tls-", suffix=".pem", dir=self._workdir)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(bundle)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)

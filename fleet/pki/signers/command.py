"""fleet.pki.signers.command — sign by running an external program (``--signer command``).

The program gets the CSR (PEM) on stdin and these environment variables:

    CERTFLEET_DEVICE        the device name
    CERTFLEET_HOST          its host ("" for a cloud device without one)
    CERTFLEET_PURPOSES      comma list: HTTPS,SIP,...
    CERTFLEET_CSR_SUBJECT   the subject, one-line form (/C=NO/O=Example/CN=room-1)
    CERTFLEET_SANS          comma list: DNS:room-1.example.com,IP:10.0.0.7,...
    CERTFLEET_<KEY>         each item of the request's metadata (e.g. CERTFLEET_RUN_ID)

and prints the certificate, with its chain in any order, as PEM on stdout. It runs without a
shell, in its own process group; when it outlives ``timeout`` the whole group is killed. A
non-zero exit, a timeout, output without a certificate, or a certificate for another key than
the CSR's is a :class:`~fleet.errors.SignerError` (with the last lines of stderr, redacted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Mapping, Sequence
from typing import Final

from ...errors import InputError, PemError, SignerError
from ...secrets import redact
from ..bundle import order_chain
from ..certs import oneline_name, parse_pem_certificates
from ..checks import describe_cert
from ..csr import csr_pem, san_strings
from ..keys import describe_key, same_public_key
from .base import SignedCertificate, SigningRequest

__all__ = ["CommandSigner"]

_STDERR_LINES: Final = 5
_LINE_MAX: Final = 300
_NOT_ENV: Final = re.compile(r"[^A-Za-z0-9]+")


class CommandSigner:
    """Runs ``argv`` once per CSR (see the module text)."""

    name: str = "command"

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float = 60.0,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not argv or not argv[0]:
            raise InputError("the command signer needs a program to run")
        if timeout <= 0:
            raise InputError(f"the command signer's timeout must be positive, not {timeout}")
        self.argv = list(argv)
        self.timeout = timeout
        #: the environment the program starts from (default: this process's)
        self.base_env = dict(os.environ if env is None else env)

    @property
    def program(self) -> str:
        return self.argv[0]

    def environment(self, request: SigningRequest) -> dict[str, str]:
        env = dict(self.base_env)
        for key, value in request.metadata.items():
            env["CERTFLEET_" + _NOT_ENV.sub("_", key).strip("_").upper()] = value
        env.update(
            CERTFLEET_DEVICE=request.device.name,
            CERTFLEET_HOST=request.device.host or "",
            CERTFLEET_PURPOSES=",".join(request.purposes),
            CERTFLEET_CSR_SUBJECT=oneline_name(request.csr.subject),
            CERTFLEET_SANS=",".join(san_strings(request.csr)),
        )
        return env

    async def sign(self, request: SigningRequest) -> SignedCertificate:
        device = request.device.name
        out = await self._run(request)
        source = f"the output of signing command {self.program}"
        if b"-----BEGIN CERTIFICATE-----" not in out:
            raise SignerError(
                f"signing command {self.program} printed no certificate on stdout "
                f"({_glimpse(out)})",
                device=device,
            )
        try:
            certs = parse_pem_certificates(out, source=source)
            ordered = order_chain(certs, source=source)
        except PemError as exc:
            raise SignerError(redact(str(exc)), device=device) from None
        leaf = ordered[0]
        if not same_public_key(leaf, request.csr):
            raise SignerError(
                f"signing command {self.program} returned a certificate for another key: "
                f"{describe_cert(leaf)} holds {describe_key(leaf)}, the CSR "
                f"{describe_key(request.csr)}",
                device=device,
            )
        return SignedCertificate(cert=leaf, chain=tuple(ordered[1:]))

    async def _run(self, request: SigningRequest) -> bytes:
        device = request.device.name
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(request),
                start_new_session=True,  # its own process group, so it can be killed whole
            )
        except FileNotFoundError:
            raise SignerError(f"signing command {self.program} not found", device=device) from None
        except PermissionError:
            raise SignerError(f"signing command {self.program} is not executable",
                              device=device) from None
        except OSError as exc:
            raise SignerError(f"cannot run signing command {self.program}: "
                              f"{exc.strerror or exc}", device=device) from None
        try:
            try:
                out, err = await asyncio.wait_for(
                    proc.communicate(csr_pem(request.csr)), self.timeout
                )
            except TimeoutError:
                _kill_group(proc.pid)
                await proc.wait()
                raise SignerError(
                    f"signing command {self.program} did not finish within {self.timeout:g} s; "
                    "it was killed (with its process group)",
                    device=device,
                ) from None
        finally:
            if proc.returncode is None:  # cancelled from outside: leave nothing running
                _kill_group(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        code = proc.returncode
        if code != 0:
            how = (
                f"was killed by signal {_signal_name(-code)}"
                if code is not None and code < 0
                else f"exited with code {code}"
            )
            raise SignerError(
                f"signing command {self.program} {how}{_stderr_tail(err)}", device=device
            )
        return out


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _stderr_tail(err: bytes) -> str:
    lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines()]
    tail = [line[:_LINE_MAX] for line in lines if line][-_STDERR_LINES:]
    if not tail:
        return " (nothing on stderr)"
    return ": " + redact(" | ".join(tail))


def _glimpse(out: bytes) -> str:
    if not out.strip():
        return "stdout was empty"
    first = out.decode("utf-8", "replace").strip().splitlines()[0][:80]
    return f"{len(out)} bytes, starting {redact(first)!r}"

"""fleet.errors — the one exception tree of certfleet.

    CertfleetError
    ├── InputError                  bad input; nothing was touched (exit 2)
    │   ├── InventoryError          file, line and key of the problem
    │   ├── SelectionError          a --limit that is malformed or matches nothing
    │   ├── SecretError             a secret reference that cannot be resolved
    │   └── PemError                a PEM file that is not what it must be
    └── DeviceError                 something went wrong with one device
        ├── TransportError          the wire failed before the device could answer
        │   ├── UnreachableError    connection refused / DNS / TLS failure / offline
        │   │   └── TlsVerifyError  the device's TLS identity did not verify
        │   └── TimeoutError_       connect or read timed out
        ├── AuthError               401: wrong credentials or locked account (never retried)
        ├── RateLimitedError        503 / 429 after retries were exhausted
        ├── BadReplyError           the device answered something that is not a valid reply
        ├── XapiError               the device answered, and said no
        │   ├── CommandError        status="Error" / ActionError, with reason and xPath
        │   │   └── NotSupportedError  the device (release/product) has no such command
        │   └── ParameterError      status="ParameterError" / error="True"
        ├── DeviceSkipped           not an error: the plan leaves this device alone (why)
        ├── CertificateCheckError   a certificate/key failed a check before it was pushed
        ├── VerifyError             a change was made but the device does not show it
        └── SignerError             the signer (local CA, command, SCEP server) failed
            └── ScepError           SCEP: unreachable server, wrong CA, FAILURE reply

Every DeviceError carries the device name and, where there is one, the xAPI path, so a report can
say exactly which device and which command failed. ``kind`` is the stable machine-readable name
used in JSON output.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadReplyError",
    "CertfleetError",
    "CertificateCheckError",
    "CommandError",
    "DeviceError",
    "DeviceSkipped",
    "InputError",
    "InventoryError",
    "NotSupportedError",
    "ParameterError",
    "PemError",
    "RateLimitedError",
    "ScepError",
    "SecretError",
    "SelectionError",
    "SignerError",
    "SigningPending",
    "TimeoutError_",
    "TlsVerifyError",
    "TransportError",
    "UnreachableError",
    "VerifyError",
    "XapiError",
]


class CertfleetError(Exception):
    """Root of every error certfleet raises on purpose."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- input


class InputError(CertfleetError):
    """Bad input from the user: inventories, files, options. Nothing was touched."""

    kind = "input"


class InventoryError(InputError):
    """An inventory problem, located at file:line and key."""

    kind = "inventory"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        problems: list[InventoryError] | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        where = ""
        if file:
            where = f"{file}:{line}" if line else file
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = message
        #: every problem found (an inventory is checked whole, not stopped at the first one)
        self.problems: list[InventoryError] = problems if problems else [self]


class SelectionError(InputError):
    """A --limit expression that is malformed or selects no device."""

    kind = "selection"


class SecretError(InputError):
    """A secret reference that cannot be resolved (the secret itself is never in the text)."""

    kind = "secret"


class PemError(InputError):
    """A PEM file or bundle that is not what it must be."""

    kind = "pem"

    def __init__(self, message: str, *, file: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)
        self.reason = message


# -------------------------------------------------------------------------- device


class DeviceError(CertfleetError):
    """Something went wrong with one device."""

    kind = "device"

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        xpath: str | None = None,
    ) -> None:
        super().__init__(message)
        self.device = device
        self.xpath = xpath

    def __str__(self) -> str:
        parts = []
        if self.device:
            parts.append(self.device)
        if self.xpath:
            parts.append(self.xpath)
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def with_context(self, *, device: str | None = None, xpath: str | None = None) -> DeviceError:
        """Fill in device / xpath where they are still unknown; returns self."""
        if device and not self.device:
            self.device = device
        if xpath and not self.xpath:
            self.xpath = xpath
        return self


class TransportError(DeviceError):
    kind = "transport"


class UnreachableError(TransportError):
    kind = "unreachable"


class TlsVerifyError(UnreachableError):
    kind = "tls-verify"


class TimeoutError_(TransportError):
    kind = "timeout"


class AuthError(DeviceError):
    """HTTP 401. Never retried: RoomOS locks the account after 5 failed logins."""

    kind = "auth"


class RateLimitedError(DeviceError):
    kind = "rate-limited"


class BadReplyError(DeviceError):
    kind = "bad-reply"


class XapiError(DeviceError):
    """The device understood the request and refused it."""

    kind = "xapi"

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        xpath: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, device=device, xpath=xpath)
        self.reason = reason or message


class CommandError(XapiError):
    kind = "command"


class NotSupportedError(CommandError):
    """The device has no such command (its release or product lacks it), in whichever form the
    wire says so: ActionError "No action detected in document", "Unknown command", JSON-RPC
    -32601, the cloud's 400 "... not supported". Tolerant reads take it as "absent"; its JSON
    ``kind`` stays ``command``."""


class ParameterError(XapiError):
    kind = "parameter"


class DeviceSkipped(DeviceError):
    """Not an error: the plan decided to leave this device alone, and says why."""

    kind = "skipped"


class CertificateCheckError(DeviceError):
    """A certificate, chain or key is not fit to push (named device and file)."""

    kind = "certificate-check"


class VerifyError(DeviceError):
    """The device accepted a change but does not show it (e.g. HTTPS serves the old cert)."""

    kind = "verify"


class SignerError(DeviceError):
    """The signer could not produce a certificate for the device."""

    kind = "signer"


class SigningPending(SignerError):
    """Not an error: the request is out for signing (the ``files`` signer); run again later."""

    kind = "pending"


class ScepError(SignerError):
    """A SCEP exchange failed: server unreachable, CA fingerprint mismatch, FAILURE reply."""

    kind = "scep"

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        fail_info: str | None = None,
    ) -> None:
        super().__init__(message, device=device)
        self.fail_info = fail_info

"""fleet.challenges — where each device's SCEP challenge comes from, just in time.

Either a secret reference, per device with ``{name}`` / ``{NAME}`` in it (e.g.
``env:SCEP_CHALLENGE_{NAME}``), or a command that prints a one-time password (it gets
``CERTFLEET_DEVICE`` and ``CERTFLEET_HOST``). A command's one-time challenges are asked for
only when the device enrolls: one asked for up front would be spent by nobody.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InputError, SecretError
from .inventory import Device
from .secrets import Secret, parse_secret_ref, redact, register_secret

__all__ = ["ChallengeSource", "env_name"]


def env_name(device: Device) -> str:
    """``{NAME}`` of a device: its name upper-cased, every other character ``_``."""
    return re.sub(r"[^A-Za-z0-9]", "_", device.name).upper()


@dataclass(frozen=True)
class ChallengeSource:
    """Per device, the challenge (``None``: the server needs none)."""

    reference: str | None = None
    command: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.reference and self.command:
            raise InputError("give --challenge or --challenge-command, not both")
        if self.reference:
            try:
                parse_secret_ref(self.reference.replace("{name}", "x").replace("{NAME}", "X"))
            except InputError as exc:
                raise InputError(f"--challenge: {exc}") from None
        if self.command is not None:
            try:
                if not shlex.split(self.command):
                    raise ValueError("it is empty")
            except ValueError as exc:
                raise InputError(f"--challenge-command {self.command!r}: {exc}") from None

    def _reference_for(self, device: Device) -> str:
        assert self.reference is not None
        return self.reference.replace("{name}", device.name).replace("{NAME}", env_name(device))

    def check(self, devices: Sequence[Device]) -> None:
        """Before any device is contacted: a reference resolves for every device (the values
        are read again just in time; a command's one-time challenges are not asked for)."""
        if not self.reference:
            return
        for device in devices:
            try:
                parse_secret_ref(self._reference_for(device)).resolve()
            except InputError as exc:
                raise InputError(f"--challenge for {device.name}: {exc}") from None

    def __call__(self, device: Device) -> Secret | None:
        if self.reference:
            return parse_secret_ref(self._reference_for(device)).resolve()
        if self.command:
            return self._from_command(device)
        return None

    def _from_command(self, device: Device) -> Secret:
        assert self.command is not None
        try:
            done = subprocess.run(
                shlex.split(self.command), capture_output=True, text=True,
                timeout=self.timeout, check=False,
                env={**os.environ, "CERTFLEET_DEVICE": device.name,
                     "CERTFLEET_HOST": device.host or ""},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretError(f"--challenge-command failed for {device.name}: {exc}") from exc
        value = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
        if value:
            register_secret(value)
        if done.returncode != 0 or not value:
            raise SecretError(
                f"--challenge-command gave no challenge for {device.name} (exit "
                f"{done.returncode}): {redact(done.stderr.strip()[-200:])}"
            )
        return Secret(value)

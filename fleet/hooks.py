"""fleet.hooks — ``--on-changed CMD`` / ``--on-failed CMD``: a program run per device.

The program gets the device's metadata in environment variables (``CERTFLEET_DEVICE``,
``CERTFLEET_HOST``, ``CERTFLEET_OUTCOME``, ``CERTFLEET_VERB``, ``CERTFLEET_RUN_ID``,
``CERTFLEET_OLD_FINGERPRINTS``, ``CERTFLEET_NEW_FINGERPRINTS``, ``CERTFLEET_NOT_AFTER``,
``CERTFLEET_ERROR``), never a secret, and a time limit. A hook that fails or times out makes
the device ``failed`` with the hook's reason — it is shown, never swallowed, and masked.

The rest of its environment is certfleet's, scrubbed (:func:`hook_environment`): without the
variables the run's ``env:`` secret references name, without any whose value holds a secret
certfleet resolved, and without those whose names say they carry one (``*PASSPHRASE*``,
``*PASSWORD*``, ``*TOKEN*``, ``*SECRET*``, ...). ``PATH``, ``HOME``, ``LANG`` and the like
are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Final

from .errors import InputError
from .results import DeviceResult, ErrorInfo, Outcome
from .secrets import redact

__all__ = ["Hooks", "hook_environment", "parse_hook"]

#: kept whatever their value: what a program needs to run at all
_BASICS: Final = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TERM", "TZ", "USER", "LOGNAME",
                            "SHELL", "TMPDIR", "PWD"})
#: names that carry secrets by convention (CERTFLEET_JOURNAL_PASSPHRASE, GITHUB_TOKEN, ...)
_SECRET_NAME: Final = re.compile(
    r"PASSPHRASE|PASSWORD|PASSWD|SECRET|TOKEN|CHALLENGE|CREDENTIAL|API_?KEY|PRIVATE_?KEY",
    re.IGNORECASE,
)


def hook_environment(environ: Mapping[str, str], drop: Collection[str] = ()) -> dict[str, str]:
    """``environ`` without what may carry a secret: the names in ``drop`` (those the run's
    ``env:`` references name), names that say they hold one, and any variable whose value
    holds a secret resolved in this process (the redactor knows them all)."""
    env: dict[str, str] = {}
    for name, value in environ.items():
        if name in drop or _SECRET_NAME.search(name):
            continue
        basic = name in _BASICS or name.startswith("LC_")
        if not basic and redact(value) != value:
            continue
        env[name] = value
    return env


def parse_hook(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from exc
    if not argv:
        raise InputError(f"{option} is empty")
    return argv


@dataclass(frozen=True)
class Hooks:
    on_changed: tuple[str, ...] | None = None
    on_failed: tuple[str, ...] | None = None
    timeout: float = 60.0
    #: environment variables hooks never see: those the run's env: secret references name
    drop_env: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.on_changed or self.on_failed)

    async def run(self, result: DeviceResult, *, verb: str, run_id: str) -> None:
        """Run the hook that fits the device's outcome; a failing hook fails the device."""
        if result.outcome is Outcome.CHANGED:
            argv, which = self.on_changed, "--on-changed"
        elif result.failed:
            argv, which = self.on_failed, "--on-failed"
        else:
            return
        if not argv:
            return
        env = {
            **hook_environment(os.environ, self.drop_env),
            "CERTFLEET_DEVICE": result.device,
            "CERTFLEET_HOST": result.host or "",
            "CERTFLEET_OUTCOME": result.outcome.value,
            "CERTFLEET_VERB": verb,
            "CERTFLEET_RUN_ID": run_id,
            "CERTFLEET_OLD_FINGERPRINTS": ",".join(result.fingerprints_before or []),
            "CERTFLEET_NEW_FINGERPRINTS": ",".join(result.fingerprints_after or []),
            "CERTFLEET_NOT_AFTER": _not_after(result),
            "CERTFLEET_ERROR": redact(result.error.message) if result.error else "",
        }
        problem = await _run(argv, env, self.timeout)
        if problem:
            message = f"{which} hook {argv[0]}: {redact(problem)}"
            if result.error is None:
                result.outcome = Outcome.FAILED
                result.error = ErrorInfo(kind="hook", message=message)
            else:
                result.message = "; ".join(filter(None, [result.message, message]))


def _not_after(result: DeviceResult) -> str:
    after = set(result.fingerprints_after or [])
    for key in ("certificates", "active"):
        items = result.facts.get(key)
        values = items.values() if isinstance(items, dict) else items or []
        for cert in values:
            if isinstance(cert, dict) and cert.get("fingerprint") in after:
                return str(cert.get("not_after") or "")
    return ""


async def _run(argv: tuple[str, ...], env: dict[str, str], timeout: float) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return f"cannot start: {exc.strerror or exc}"
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return f"timed out after {timeout:g}s (killed)"
    if proc.returncode:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"exit {proc.returncode}" + (f": {' / '.join(tail)}" if tail else "")
    return None

"""fleet.xapi._login — a request that carries credentials is sent at most once per device per
run, unless the device has accepted those credentials.

RoomOS locks an account after 5 failed logins. A login whose answer was lost (a reset, a
truncated 401, a read timeout) may have counted as a failure on the device: sending it again
could count twice, and a few runs would lock the room. So every request that carries
credentials (a session begin, a basic-auth request, a WebSocket upgrade, a cloud API call with
the token) goes through one :class:`LoginGuard` per account and place, shared by the run:

* ``unsent``: nothing counted against the account yet — credentials may go out;
* ``in flight``: one request with them is out; others wait for its answer (a cloud token
  shared by hundreds of devices goes out once until the API has said yes or no);
* ``accepted``: the device took them — sending them again cannot count as a failed login
  (a re-login after a reboot, a retried read on a basic-auth device);
* ``refused``: a 401 (or a WebSocket 403) — never sent again in this run;
* ``unknown``: sent, and the answer lost — never sent again in this run.

An answer that says the request was not processed (503, 429, 502 from a restarting device's
proxy) or that gives no verdict on the credentials (a 404 of a session begin) leaves the
guard as it was before the request: nothing counted.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, Literal

from ..errors import AuthError, DeviceError, TransportError

__all__ = ["NOT_RESENT", "LoginGuard", "LoginGuards", "after_failure", "device_label"]

if TYPE_CHECKING:
    from ..inventory import Device

State = Literal["unsent", "in flight", "accepted", "refused", "unknown"]

#: what a failure whose request carried credentials says about why it was not retried
NOT_RESENT: Final = (
    "; not sent again: the request carried the credentials and may have reached the device, "
    "where a wrong password would count twice toward the account lockout"
)


class LoginGuard:
    """Whether one set of credentials may be sent to one place (again) in this run."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.state: State = "unsent"
        self._settled = asyncio.Event()
        self._settled.set()
        self._refusal: str | None = None

    @property
    def may_resend(self) -> bool:
        """After a lost answer: whether the request may be sent again (only once the device
        has accepted these credentials)."""
        return self.state == "accepted"

    async def acquire(self) -> None:
        """Call before sending credentials. Waits while another request with them is out;
        raises when they were refused or their answer was lost earlier in this run."""
        while self.state == "in flight":
            await self._settled.wait()
        if self.state == "refused":
            raise AuthError(
                f"{self._refusal or 'the login was refused'} (refused earlier in this run; "
                "not sent again)"
            )
        if self.state == "unknown":
            raise TransportError(
                f"the credentials for {self.label} were sent earlier in this run and the "
                "answer was lost; not sent again in this run, so that a wrong password cannot "
                "count twice toward the account lockout"
            )
        if self.state == "unsent":
            self.state = "in flight"
            self._settled.clear()

    def _settle(self, state: State) -> None:
        self.state = state
        self._settled.set()

    def accepted(self) -> None:
        """The device took the credentials."""
        self._settle("accepted")

    def refused(self, why: str | None = None) -> None:
        """The device refused them (401, or 403 on a WebSocket upgrade)."""
        self._refusal = why
        self._settle("refused")

    def no_verdict(self) -> None:
        """An answer that counted nothing (503, 404, ...), or a request that never left."""
        if self.state == "in flight":
            self._settle("unsent")

    def lost(self) -> None:
        """Sent, and no answer: it may have counted as a failed login."""
        if self.state == "in flight":
            self._settle("unknown")


class LoginGuards:
    """The guards of one run, one per account and place."""

    def __init__(self) -> None:
        self._guards: dict[tuple[str, ...], LoginGuard] = {}

    def for_device(self, device: Device) -> LoginGuard:
        """The guard of the device's account on the device, whatever transport reaches it."""
        return self.get(device.address or device.name, device.username or "",
                        label=device_label(device))

    def get(self, *key: str, label: str) -> LoginGuard:
        guard = self._guards.get(key)
        if guard is None:
            guard = self._guards[key] = LoginGuard(label)
        return guard


def after_failure(login: LoginGuard | None, error: DeviceError, *, sent: bool,
                  retryable: bool) -> bool:
    """Settle ``login`` after a request that got no answer, and say whether it may be sent
    again: never when it carried credentials that may have reached the device and that the
    device has not accepted yet (``error`` then says why it was not)."""
    if login is None:
        return retryable
    if not sent:
        login.no_verdict()
        return retryable
    login.lost()
    if login.may_resend:
        return retryable
    if retryable:
        error.message += NOT_RESENT
    return False


def device_label(device: Device) -> str:
    """``user@host:port``: the account and place a device's login guard is for."""
    return f"{device.username or ''}@{device.address or device.name}"

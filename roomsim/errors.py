"""The one exception a device operation raises when it fails: the message is the Reason
text the device replies with (`<XResult status="Error"><Reason>…`)."""

from __future__ import annotations


class DeviceError(Exception):
    """A command ran and failed; `str(error)` is the Reason."""

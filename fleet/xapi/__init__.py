"""fleet.xapi — one xAPI vocabulary (``commands``) over several wires (``local``, later
``cloud`` and ``websocket``), behind the small ``XapiTransport`` interface."""

from .commands import PURPOSES, CertificateInfo, SystemUnit, Xapi
from .transport import Exchange, XapiTransport

__all__ = ["PURPOSES", "CertificateInfo", "Exchange", "SystemUnit", "Xapi", "XapiTransport"]

"""Wi-Fi profiles (`xCommand Network Wifi …`) and how a simulated device's Wi-Fi and wired
802.1X links come out (`xStatus Network[1] Wifi …` / `IEEE8021X …`).

There is no radio and no authenticator: the simulated network is always in range and
accepts any client that brings what its configuration asks for. So the status follows from
the device's own state only: an EAP-TLS link needs a certificate active for 802.1X, and
server validation needs a CA on the CA list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .device import SimDevice

# Schema 26.4.1 `Network Wifi Configure Type`: current names, then the deprecated ones.
WIFI_TYPES: tuple[str, ...] = (
    "None",
    "Personal",
    "Enterprise-Fast",
    "Enterprise-Peap",
    "Enterprise-Tls",
    "Enterprise-Ttls",
)
DEPRECATED_WIFI_TYPES: dict[str, str] = {
    "Open": "None",
    "Wpa2-psk": "Personal",
    "Wpa2-eap-fast": "Enterprise-Fast",
    "Wpa2-eap-peap": "Enterprise-Peap",
    "Wpa2-eap-tls": "Enterprise-Tls",
    "Wpa2-eap-ttls": "Enterprise-Ttls",
    # RoomOS 9.15 (schema 9.15.17.4); plain "Wpa-eap" is taken as PEAP (roomsim's choice)
    "Wpa-psk": "Personal",
    "Wpa-eap": "Enterprise-Peap",
    "Wpa-eap-fast": "Enterprise-Fast",
    "Wpa-eap-peap": "Enterprise-Peap",
    "Wpa-eap-tls": "Enterprise-Tls",
    "Wpa-eap-ttls": "Enterprise-Ttls",
}
ALL_WIFI_TYPES: tuple[str, ...] = (*WIFI_TYPES, *DEPRECATED_WIFI_TYPES)
CONNECT_MODES: tuple[str, ...] = ("Auto", "Later")

_8021X = "Network[1]/IEEE8021X/"


@dataclass
class WifiProfile:
    """One stored Wi-Fi network. `wifi_type` is the current name (deprecated names are
    stored as their replacement). The password is the device's own secret: kept in the
    device state, never shown by any command or status."""

    profile_id: int
    ssid: str
    wifi_type: str
    identity: str = ""
    password: str = ""
    anonymous_identity: str = ""
    allow_missing_ca: bool = False
    connect: str = "Auto"

    @property
    def enterprise(self) -> bool:
        return self.wifi_type.startswith("Enterprise-")

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.profile_id,
            "ssid": self.ssid,
            "type": self.wifi_type,
            "identity": self.identity,
            "password": self.password,
            "anonymous_identity": self.anonymous_identity,
            "allow_missing_ca": self.allow_missing_ca,
            "connect": self.connect,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> WifiProfile:
        return cls(
            profile_id=int(data["id"]),
            ssid=str(data["ssid"]),
            wifi_type=canonical_wifi_type(str(data.get("type", "None"))),
            identity=str(data.get("identity", "")),
            password=str(data.get("password", "")),
            anonymous_identity=str(data.get("anonymous_identity", "")),
            allow_missing_ca=bool(data.get("allow_missing_ca", False)),
            connect=str(data.get("connect", "Auto")),
        )


def canonical_wifi_type(value: str) -> str:
    return DEPRECATED_WIFI_TYPES.get(value, value)


@dataclass(frozen=True)
class LinkStatus:
    status: str
    reason: str = ""


# --------------------------------------------------------------------------- Wi-Fi


def active_wifi_profile(device: SimDevice) -> WifiProfile | None:
    """The network the device joins: the most recently configured profile with
    Connect Auto (Later profiles are stored for later)."""
    auto = [p for p in device.wifi if p.connect == "Auto"]
    return auto[-1] if auto else None


def wifi_status(device: SimDevice) -> LinkStatus:
    profile = active_wifi_profile(device)
    if profile is None:
        return LinkStatus("Disconnected", "No Wi-Fi network configured to connect")
    if profile.wifi_type == "Enterprise-Tls":
        if device.store.active_for("802.1X") is None:
            return LinkStatus("AuthFailed", "No certificate is active for 802.1X")
        return _server_validation(device, profile.allow_missing_ca)
    if profile.enterprise:  # PEAP, TTLS, FAST: inner authentication with a password
        if not profile.identity or not profile.password:
            return LinkStatus("AuthFailed", "Identity and Password are needed")
        return _server_validation(device, profile.allow_missing_ca)
    return LinkStatus("Connected")  # None and Personal: nothing the device can get wrong


def _server_validation(device: SimDevice, skip: bool) -> LinkStatus:
    if skip or device.ca_list:
        return LinkStatus("Connected")
    return LinkStatus("AuthFailed", "No CA certificate to validate the server with")


# --------------------------------------------------------------------------- wired 802.1X


def ieee8021x_status(device: SimDevice) -> LinkStatus:
    """Off while Mode is Off. With EAP-TLS and a client certificate: Connected once a
    certificate is active for 802.1X and, if TlsVerify is On, the CA list is not empty.
    Otherwise the password methods (MD5, PEAP, TTLS) need Identity and Password."""
    config = device.config
    if config.get(_8021X + "Mode") != "On":
        return LinkStatus("Off")
    if (
        config.get(_8021X + "Eap/Tls") == "On"
        and config.get(_8021X + "UseClientCertificate") == "On"
    ):
        if device.store.active_for("802.1X") is None:
            return LinkStatus("AuthFailed", "No certificate is active for 802.1X")
        if config.get(_8021X + "TlsVerify") == "On" and not device.ca_list:
            return LinkStatus("AuthFailed", "TlsVerify is On and the CA list is empty")
        return LinkStatus("Connected")
    methods = [m for m in ("Md5", "Peap", "Ttls") if config.get(_8021X + "Eap/" + m) == "On"]
    if not methods:
        return LinkStatus("Failed", "No usable EAP method is enabled")
    if not config.get(_8021X + "Identity") or not config.get(_8021X + "Password"):
        return LinkStatus("AuthFailed", "Identity and Password are needed")
    return LinkStatus("Connected")

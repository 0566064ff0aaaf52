"""One simulated device: identity, certificate stores, configuration, SCEP renewal profiles,
Wi-Fi profiles, faults, and the TLS identity its HTTPS server presents. Persisted to
`devices/<name>/state.json`."""

from __future__ import annotations

import datetime as dt
import functools
import time
import xml.etree.ElementTree as ET
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from certfleet.fleet.xapi.releases import NodeSpec, ReleaseModel

from . import configuration, enrollment, status
from .certs import (
    CertInfo,
    issue_server_cert,
    serial_number_for,
    temporary_default_cert,
)
from .enrollment import EnrollmentProfile, RenewalResult, profile_from_state
from .faults import Faults
from .firmware import (
    DEFAULT_RELEASE,
    Firmware,
    Product,
    RequestLog,
    firmware_for,
    record_violations,
)
from .network import WifiProfile
from .state import StateDir
from .store import CertStore, ServiceCert
from .tls import DeviceTLS
from .xml_wire import parse_path, select

GROUPS: tuple[str, ...] = ("oslo", "bergen", "trondheim")
LOOPBACK = "127.0.0.1"
SCEP_TIMEOUT = 30.0


class SimDevice:
    """A simulated Board/Desk/Room device. `index` (1-based) picks product and site group."""

    def __init__(
        self,
        name: str,
        index: int,
        *,
        password: str,
        state: StateDir,
        store: CertStore,
        config: dict[str, str],
        profiles: list[EnrollmentProfile],
        wifi: list[WifiProfile] | None = None,
        port: int = 0,
        scep_timeout: float = SCEP_TIMEOUT,
        firmware: Firmware | None = None,
    ) -> None:
        self.name = name
        self.index = index
        self.firmware = firmware or firmware_for(DEFAULT_RELEASE, index)
        self.group = GROUPS[(index - 1) % len(GROUPS)]
        self.serial = serial_number_for(name)
        self.requests = RequestLog()  # every command and configuration write received
        self.host = LOOPBACK
        self.port = port
        self.password = password
        self.store = store
        self.config = config
        self.profiles = profiles  # SCEP renewal profiles
        self.wifi: list[WifiProfile] = wifi if wifi is not None else []
        self.scep_timeout = scep_timeout  # seconds per HTTP request to a SCEP server
        self.faults = Faults()
        self.failed_logins = 0  # Basic logins refused since the fleet started (wrong or locked)
        self.requests_seen = 0  # HTTP requests (any path, any answer) since the fleet started
        self.booted_at = time.monotonic()
        self._state = state
        self.tls = DeviceTLS(lambda: self.https_certificate().tls_bundle(), state.device_dir(name),
                             lambda: self.https_certificate().tls_identity())

    @property
    def product(self) -> Product:
        return self.firmware.product

    @property
    def software_version(self) -> str:
        return self.firmware.software_version

    @property
    def model(self) -> ReleaseModel:
        return self.firmware.model

    @property
    def product_code(self) -> str:
        return self.firmware.product.code

    def violations(self) -> list[str]:
        """What this device was sent that its release and product lack (request log)."""
        return [f"{self.name}: {v}" for v in record_violations(self.firmware, self.requests)]

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        state: StateDir,
        name: str,
        index: int,
        *,
        password: str,
        ca_cert: x509.Certificate,
        ca_key: CertificateIssuerPrivateKeyTypes,
        scep_timeout: float = SCEP_TIMEOUT,
        firmware: Firmware | None = None,
    ) -> SimDevice:
        """Load the device from the state folder, or create it (and save it) on first start."""
        data = state.load_device(name)
        if data is not None:
            config = configuration.defaults()
            config.update({k: v for k, v in data.get("config", {}).items() if k in config})
            return cls(
                name,
                index,
                password=password,
                state=state,
                store=CertStore.from_state(data),
                config=config,
                profiles=[profile_from_state(p) for p in data.get("profiles", [])],
                wifi=[WifiProfile.from_state(w) for w in data.get("wifi", [])],
                port=int(data.get("port", 0)),
                scep_timeout=scep_timeout,
                firmware=firmware,
            )
        server_cert, server_key = issue_server_cert(ca_cert, ca_key, name)
        https = ServiceCert(CertInfo.of(server_cert), [], server_key, ["HTTPS"])
        store = CertStore(services=[https])
        device = cls(
            name,
            index,
            password=password,
            state=state,
            store=store,
            config=configuration.defaults(),
            profiles=[],
            scep_timeout=scep_timeout,
            firmware=firmware,
        )
        device.add_temporary_default()
        device.save()
        return device

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "config": dict(self.config),
            "profiles": [dict(p) for p in self.profiles],
            "wifi": [w.to_state() for w in self.wifi],
            **self.store.to_state(),
        }

    def save(self) -> None:
        self._state.save_device(self.name, self.to_state())

    def mark_booted(self) -> None:
        self.booted_at = time.monotonic()

    @property
    def uptime(self) -> int:
        return int(time.monotonic() - self.booted_at)

    # ------------------------------------------------------------------ certificates

    @property
    def ca_list(self) -> list[CertInfo]:
        return self.store.ca_list

    @property
    def services(self) -> list[ServiceCert]:
        return self.store.services

    def add_temporary_default(self) -> ServiceCert:
        cert, key = temporary_default_cert(self.serial)
        service = ServiceCert(CertInfo.of(cert), [], key, [])
        self.store.services.append(service)
        return service

    def https_certificate(self) -> ServiceCert:
        """What the HTTPS server presents: the certificate active for HTTPS, else the
        temporary default certificate (recreated if it was deleted)."""
        active = self.store.active_for("HTTPS") or self.store.temporary_default()
        if active is None:
            active = self.add_temporary_default()
            self.save()
        return active

    def certificates_changed(self) -> None:
        """Persist and make the next TLS handshake use the current HTTPS certificate."""
        self.tls.invalidate()
        self.save()

    async def run_renewal_check(self, now: dt.datetime | None = None) -> list[RenewalResult]:
        """What a real device does once a day: renew, by SCEP with a new key, every
        certificate expiring within 45 days of `now` whose issuer is a renewal profile's
        CA. The renewed certificate keeps the purposes of the old one, which is removed."""
        return await enrollment.run_renewal_check(self, now)

    # ------------------------------------------------------------------ xAPI documents

    def _root(self, tag: str) -> ET.Element:
        return ET.Element(
            tag, {"product": "Cisco Codec", "version": self.software_version, "apiVersion": "4"}
        )

    def configuration_node(self, key: str) -> NodeSpec | None:
        """The release's configuration `key` (`Network[1]/IEEE8021X/Mode`) on this product."""
        return _node(self.firmware, "Configuration", key)

    def status_node(self, path: str) -> NodeSpec | None:
        return _node(self.firmware, "Status", path)

    def getxml(self, location: str) -> ET.Element:
        """The getxml reply for `location`. A path that names nothing the device has (its
        release or product lacks it, or it does not exist) gives a root `<EmptyResult/>`,
        as RoomOS answers; an empty or malformed location an XPath parsing Fault."""
        segments = parse_path(location)
        if not segments:
            return xpath_fault()
        if segments[0].item is not None:
            return self._root("EmptyResult")
        top = segments[0].name.lower()
        if top == "configuration":
            tree = configuration.config_tree(
                self.config, self._root("Configuration"), self.configuration_node)
        elif top == "status":
            only = segments[1].name if len(segments) > 1 else None
            tree = status.status_tree(self, self._root("Status"), only)
        else:
            return self._root("EmptyResult")
        if len(segments) == 1:
            return tree
        selected = select(tree, segments[1:])
        return selected if len(selected) else self._root("EmptyResult")


@functools.lru_cache(maxsize=4096)  # every getxml asks for every leaf of the tree
def _node(firmware: Firmware, kind: str, path: str) -> NodeSpec | None:
    model, code = firmware.model, firmware.product.code
    return model.configuration(path, code) if kind == "Configuration" else model.status(path, code)


def xpath_fault() -> ET.Element:
    """RoomOS's answer to a getxml whose location is empty or cannot be parsed."""
    fault = ET.Element("Fault")
    error = ET.SubElement(fault, "XPathError", type="parsing")
    ET.SubElement(error, "ErrorCode").text = "10"
    return fault

"""Which RoomOS release and product each simulated device runs, what that lets it accept, and
the log of what it was sent.

Every device runs one release of the release model (`fleet/xapi/releases.py`, data generated
from Cisco's per-release xAPI schemas) on one product. Its commands, parameters, values,
configurations and statuses are those of that release and product: roomsim refuses the rest
the way a device does (see `commands.py`, `configuration.py`, `device.py`).

`--firmware RELEASE` gives every device that release (products cycle through `PRODUCTS` as
before); `--firmware mix` gives device n the n-th entry of `MIX` (cycling). The default is
26.4.1, the newest modelled release, on which everything certfleet sent before it knew about
releases exists. A per-device choice is written `RELEASE` or `RELEASE:PRODUCT-CODE`
(e.g. `11.24.1:vecchio`).

The request log (`SimDevice.requests`) keeps every command (with its parameters, as sent) and
every configuration write each device received, over every API, refused or not;
`violations` checks it against the device's release and product."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from certfleet.fleet.xapi.releases import SUPPORTED, ReleaseModel, Version, model_for

DEFAULT_RELEASE = "26.4.1"
MIX_CHOICE = "mix"
BUILD_ID = "1234abcd"
LOG_LIMIT = 20_000  # records kept per device (the oldest go first)


@dataclass(frozen=True)
class Product:
    product_id: str  # xStatus SystemUnit ProductId
    platform: str  # xStatus SystemUnit ProductPlatform
    tag: str  # the inventory tag
    software_name: str
    code: str  # the schema's internal product code


BOARD_PRO = Product("Cisco Board Pro", "Board Pro", "board", "s53300", "helix_55")
DESK_PRO = Product("Cisco Desk Pro", "Desk Pro", "desk", "s53200", "polaris")
ROOM_BAR = Product("Cisco Room Bar", "Room Bar", "bar", "s53300", "davinci")
ROOM_KIT_PRO = Product("Cisco Room Kit Pro", "Room Kit Pro", "roomkit", "s53200", "barents")
ROOM_KIT = Product("Cisco Room Kit", "Room Kit", "roomkit", "s52020", "hopen")
CODEC_PLUS = Product("Cisco Codec Plus", "Codec Plus", "codec", "s52020", "svea")
ROOM_KIT_MINI = Product("Cisco Room Kit Mini", "Room Kit Mini", "roomkit", "s52020", "havella")
NAVIGATOR = Product("Cisco Room Navigator", "Room Navigator", "navigator", "s53300", "vecchio")

PRODUCTS: tuple[Product, ...] = (BOARD_PRO, DESK_PRO, ROOM_BAR, ROOM_KIT_PRO)
ALL_PRODUCTS: tuple[Product, ...] = (
    *PRODUCTS, ROOM_KIT, CODEC_PLUS, ROOM_KIT_MINI, NAVIGATOR)

# `--firmware mix`: device n gets MIX[(n - 1) % 8]. Old codecs on 9.15 and 10.19 (no SCEP,
# no renewal profiles, no SyncToPeripherals, no 802.1X status; Wi-Fi Type Wpa-eap-tls on 9.15),
# 11.24.1 (no Wi-Fi Connect, no profile challenge, no Enterprise-Tls), 11.27.2.0
# (Enterprise-Tls), 26.1.1 (Connect; only "Auto" on the Room Kit Mini) and 26.4.1; the Room
# Navigator has neither Wi-Fi nor SyncToPeripherals.
MIX: tuple[tuple[str, Product], ...] = (
    ("26.4.1", BOARD_PRO),
    ("11.24.1", DESK_PRO),
    ("9.15.17.4", ROOM_KIT),
    ("10.19.4.2", CODEC_PLUS),
    ("11.27.2.0", ROOM_BAR),
    ("26.1.1", ROOM_KIT_MINI),
    ("11.24.1", NAVIGATOR),
    ("26.1.1", ROOM_KIT_PRO),
)


@dataclass(frozen=True)
class Firmware:
    release: str  # a modelled release, e.g. "11.24.1"
    product: Product

    @property
    def model(self) -> ReleaseModel:
        return model_for(self.release)

    @property
    def software_version(self) -> str:
        """`ce11.24.1.5.1234abcd`: a maintenance build of the release, then the build id."""
        numbers = self.release if self.release.count(".") >= 3 else f"{self.release}.5"
        return f"ce{numbers}.{BUILD_ID}"

    @property
    def has_wifi(self) -> bool:
        return _has_wifi(self)

    def describe(self) -> str:
        return f"RoomOS {self.release} on {self.product.platform}"


@functools.cache
def _has_wifi(firmware: Firmware) -> bool:
    return firmware.model.command("Network Wifi Configure", firmware.product.code) is not None


def check_choice(text: str) -> str:
    """A `--firmware` value: `mix`, a modelled release, or `RELEASE:PRODUCT-CODE`.
    ValueError names what is wrong and what is allowed."""
    value = text.strip()
    if value.lower() == MIX_CHOICE:
        return MIX_CHOICE
    release, _, code = value.partition(":")
    version = Version.parse(release)
    if version is None or str(version) not in SUPPORTED or release.strip() != str(version):
        raise ValueError(f"--firmware {text!r}: use 'mix' or one of {', '.join(SUPPORTED)}")
    if code:
        product = _product(code)
        if product.code not in model_for(release).products:
            raise ValueError(f"--firmware {text!r}: RoomOS {release} does not run on {code}")
    return value


def _product(code: str) -> Product:
    for product in ALL_PRODUCTS:
        if product.code == code.strip():
            return product
    codes = ", ".join(p.code for p in ALL_PRODUCTS)
    raise ValueError(f"unknown product code {code!r}: roomsim has {codes}")


def firmware_for(choice: str, index: int) -> Firmware:
    """Device `index`'s (1-based) firmware for a checked choice."""
    if choice == MIX_CHOICE:
        release, product = MIX[(index - 1) % len(MIX)]
        return Firmware(release, product)
    release, _, code = choice.partition(":")
    product = _product(code) if code else PRODUCTS[(index - 1) % len(PRODUCTS)]
    if product.code not in model_for(release).products:  # e.g. 9.15 has no Board Pro
        product = next(p for p in ALL_PRODUCTS if p.code in model_for(release).products)
    return Firmware(release, product)


# --------------------------------------------------------------------------- the request log


@dataclass(frozen=True)
class RequestRecord:
    """One command or configuration write as a device received it."""

    via: str  # "putxml", "jsonrpc", "cloud"
    kind: str  # "command" or "configuration"
    path: str  # "Network/Wifi/Configure", "Network[1]/IEEE8021X/Mode"
    params: tuple[tuple[str, str], ...]  # (name, value) as sent; a configuration: (("", value),)
    body: bool = False


def _kept(name: str, value: str) -> str:
    """Secrets (passwords, challenges) are kept as stars of their length: enough to check
    them against a value space, nothing to leak."""
    return "*" * len(value) if "password" in name.lower() else value


class RequestLog:
    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.records: deque[RequestRecord] = deque(maxlen=limit)

    def command(self, via: str, path: Sequence[str], params: Mapping[str, Iterable[str]],
                body: bool = False) -> None:
        pairs = tuple((name, _kept(name, str(v))) for name, values in params.items()
                      for v in values)
        self.records.append(RequestRecord(via, "command", "/".join(path), pairs, body))

    def configuration(self, via: str, key: str, value: str) -> None:
        self.records.append(RequestRecord(via, "configuration", key, (("", _kept(key, value)),)))

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(list(self.records))

    def __len__(self) -> int:
        return len(self.records)


def record_violations(firmware: Firmware, records: Iterable[RequestRecord]) -> list[str]:
    """Each command, parameter, value or configuration in `records` that the release and
    product lack, in words."""
    model, code = firmware.model, firmware.product.code
    where = f"RoomOS {firmware.release} on {code}"
    found: list[str] = []
    for record in records:
        if record.kind == "configuration":
            node = model.configuration(record.path, code)
            if node is None:
                found.append(f"{record.via}: configuration {record.path}: not in {where}")
            elif node.value is not None and not node.value.accepts(record.params[0][1]):
                value = record.params[0][1]
                shown = f"{value!r}" if node.value.kind != "String" else f"length {len(value)}"
                found.append(f"{record.via}: configuration {record.path} = {shown}: not "
                             f"{node.value.describe()} ({where})")
            continue
        spec = model.command(record.path.replace("/", " "), code)
        if spec is None:
            found.append(f"{record.via}: command {record.path}: not in {where}")
            continue
        if record.body and not spec.multiline:
            found.append(f"{record.via}: command {record.path} takes no body ({where})")
        for name, value in record.params:
            param = spec.params.get(name)
            if param is None:
                found.append(f"{record.via}: {record.path}: no parameter {name} in {where}")
            elif not param.accepts(value):
                shown = f"{value!r}" if param.kind != "String" else f"length {len(value)}"
                found.append(f"{record.via}: {record.path} {name}: {shown} is not "
                             f"{param.describe()} ({where})")
    return found

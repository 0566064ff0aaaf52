"""fleet.inventory.loader — one pass over one inventory file: its sections, its devices (every
inherited setting merged in) and its warnings; :func:`load_inventory`."""

from __future__ import annotations

import gc
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from yaml.nodes import MappingNode, Node

from ..errors import InputError, InventoryError
from ..files import read_file
from .checks import _listing
from .fields import _COMMON_KEYS, _DEVICE_KEYS, _Fields
from .layers import _SCALARS, _Layer, _merge, _template
from .model import DEFAULT_API_URL, Device, Group, Inventory, Verify
from .template import CertificateTemplate
from .yaml_nodes import _BUDGET_BASE, _is_null, _kind, _line

_TOP_KEYS: Final = ("defaults", "groups", "devices")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME_RULE: Final = (
    "must start with a letter or digit and contain only letters, digits, '.', '_', '-'"
)


class _Loader(_Fields):
    """One pass over one inventory file, collecting every problem."""

    def __init__(self, path: Path, display: str) -> None:
        super().__init__(path, display)
        self.group_lines: dict[str, int] = {}
        self._bases: dict[tuple[str, ...], tuple[_Layer, CertificateTemplate | str]] = {}
        self._defaults = _Layer()

    # -- the whole file

    def load(self, text: str) -> Inventory:
        self._budget = _BUDGET_BASE + len(text)
        root = self._compose(text)
        if root is None or _is_null(root):
            raise self.fail("the inventory is empty: it needs at least a devices: section")
        if not isinstance(root, MappingNode):
            raise self.fail(
                f"the top level must be a mapping with defaults:, groups: and devices:, "
                f"not {_kind(root)}",
                _line(root),
            )
        top = self._mapping(root, "")
        misspelt: set[str] = set()
        for key, (knode, _value) in top.items():
            if key not in _TOP_KEYS:
                hint = self._unknown_key(knode, key, key, _TOP_KEYS, top, None, "the top level")
                misspelt.update([hint] if hint else [])
        if "defaults" in top and not _is_null(top["defaults"][1]):
            self._defaults = self._layer(top["defaults"][1], "defaults", _COMMON_KEYS, "defaults")
        if "groups" in top:
            self._load_groups(top["groups"][1])
        devices: dict[str, Device] = {}
        if "devices" not in top and "devices" in misspelt:
            pass  # "device:" or the like: already reported with a suggestion
        elif "devices" not in top or _is_null(top["devices"][1]):
            line = _line(top["devices"][0]) if "devices" in top else None
            self.problem(line, "devices", "no devices: add a devices: section with one entry each")
        else:
            devices = self._load_devices(top["devices"][1])
        if self.problems:
            self._raise()
        groups = {
            name: Group(
                name=name,
                tags=tuple(sorted(set(layer.tags))),
                devices=tuple(n for n, d in devices.items() if name in d.groups),
                source=f"{self.display}:{self.group_lines[name]}",
            )
            for name, layer in self.groups.items()
        }
        return Inventory(
            path=self.path.absolute(),
            devices=devices,
            groups=groups,
            warnings=self._warnings(devices),
        )


    # -- sections

    def _load_groups(self, node: Node) -> None:
        if _is_null(node):
            return
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node), "groups", f"must map group names to settings, not {_kind(node)}"
            )
            return
        for name, (knode, vnode) in self._mapping(node, "groups").items():
            path = f"groups.{name}"
            if not _NAME_RE.fullmatch(name):
                self.problem(_line(knode), path, f"group name {name!r} {_NAME_RULE}")
            layer = (
                _Layer(line=_line(knode))
                if _is_null(vnode)
                else self._layer(vnode, path, _COMMON_KEYS, "a group")
            )
            self.groups[name] = layer
            self.group_lines[name] = _line(knode)

    def _load_devices(self, node: Node) -> dict[str, Device]:
        devices: dict[str, Device] = {}
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node), "devices", f"must map device names to settings, not {_kind(node)}"
            )
            return devices
        entries = self._mapping(node, "devices")
        if not entries:
            self.problem(_line(node), "devices", "no devices: add one entry per device")
        for name, (knode, vnode) in entries.items():
            device = self._device(name, knode, vnode)
            if device is not None and not self.problems:
                devices[name] = device
        return devices

    def _device(self, name: str, knode: Node, vnode: Node) -> Device | None:
        path = f"devices.{name}"
        line = _line(knode)
        if not _NAME_RE.fullmatch(name):
            self.problem(line, path, f"device name {name!r} {_NAME_RULE}")
        if _is_null(vnode):
            self.problem(
                line,
                path,
                "the device has no settings: give it host: (or transport: cloud and device_id:)",
            )
            return None
        layer = self._layer(vnode, path, _DEVICE_KEYS, "a device")
        groups = tuple(g for g in layer.groups if g in self.groups)
        base, base_template = self._base(groups)
        merged = _merge([base, layer])
        transport = merged.transport or "local"
        needs = {"local": "host", "websocket": "host", "cloud": "device_id"}.get(transport)
        if (
            needs is not None
            and "transport" not in merged.invalid
            and needs not in merged.invalid
            and getattr(merged, needs) is None
        ):
            what = "the device's name or IP address" if needs == "host" else "the Webex device id"
            self.problem(line, path, f"transport {transport} needs {needs}: ({what})")
        if self.problems:
            return None  # the inventory will not load: building devices is wasted work
        if layer.certificate is None:
            template = base_template
        else:
            try:
                template = _template(merged.certificate)
            except InputError as exc:
                template = exc.message
        if isinstance(template, str):
            self.problem(line, f"{path}.certificate", template)
            return None
        return Device(
            name=name,
            host=merged.host,
            port=merged.port or 443,
            transport=transport,
            username=merged.username,
            password=merged.password,
            token=merged.token,
            device_id=merged.device_id,
            verify=merged.verify or Verify("system"),
            groups=layer.groups,
            tags=tuple(sorted(merged.tags)),
            timezone=merged.timezone,
            certificate=template,
            source=f"{self.display}:{line}",
            api_url=merged.api_url or DEFAULT_API_URL,
            api_verify=merged.api_verify or Verify("system"),
            api_rate_per_minute=merged.api_rate_per_minute,
        )

    def _base(self, groups: tuple[str, ...]) -> tuple[_Layer, CertificateTemplate | str]:
        """defaults + the groups, merged (cached: many devices share the same groups)."""
        cached = self._bases.get(groups)
        if cached is None:
            base = _merge([self._defaults, *(self.groups[g] for g in groups)])
            template: CertificateTemplate | str
            try:
                template = _template(base.certificate)
            except InputError as exc:
                template = exc.message
            cached = self._bases[groups] = (base, template)
        return cached

    def _warnings(self, devices: Mapping[str, Device]) -> list[str]:
        warnings: list[str] = []
        insecure = [d for d in devices.values() if d.verify.insecure and d.transport != "cloud"]
        if 0 < len(insecure) <= 5:
            warnings.extend(
                f"{d.name}: verify: insecure, the device's TLS identity is not checked ({d.source})"
                for d in insecure
            )
        elif insecure:
            names = _listing([d.name for d in insecure], limit=20)
            warnings.append(
                f"{len(insecure)} devices use verify: insecure, their TLS identity is not "
                f"checked: {names}"
            )
        addresses: dict[str, str] = {}
        for device in devices.values():
            if device.transport == "cloud" or device.address is None:
                continue
            other = addresses.setdefault(device.address, device.name)
            if other != device.name:
                warnings.append(f"{other} and {device.name} have the same address {device.address}")
        return warnings

    # -- one level of settings

    def _layer(self, node: Node, path: str, allowed: tuple[str, ...], where: str) -> _Layer:
        layer = _Layer(line=_line(node))
        if not isinstance(node, MappingNode):
            self.problem(_line(node), path, f"must be a mapping of settings, not {_kind(node)}")
            layer.invalid.update(_SCALARS)
            return layer
        entries = self._mapping(node, path)
        for key, (knode, vnode) in entries.items():
            kpath = f"{path}.{key}"
            if key in allowed:
                self._handlers[key](layer, vnode, kpath)
            else:
                self._unknown_key(knode, kpath, key, allowed, entries, layer, where)
        return layer


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory; InventoryError (with every problem) if it is not valid."""
    file = Path(path)
    display = str(path)
    try:
        data = read_file(file)  # never blocks on a FIFO, never reads /dev/zero, capped
    except IsADirectoryError:
        raise InventoryError("is a directory, not an inventory file", file=display) from None
    except FileNotFoundError:
        raise InventoryError("no such inventory file", file=display) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(f"cannot read the inventory: {reason}", file=display) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError("the inventory is not UTF-8 text", file=display, line=line) from None
    # Composing and checking allocate many small objects and no cycles: the cyclic garbage
    # collector would only triple the time of a 10,000-device load.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Loader(file, display).load(text)
    finally:
        if gc_was_enabled:
            gc.enable()

"""fleet.firmware — what each device's RoomOS release and product let certfleet send.

A run reads every device's ``Status SystemUnit`` once (Software Version, ProductId,
ProductPlatform) and keeps it as a :class:`Firmware`: the version, the product and the release
model (:mod:`fleet.xapi.releases`, generated from Cisco's per-release schemas) that says which
commands, parameters, values and configurations that device has.

One place answers "does this device have command X with parameters P" (:func:`problem`), used

* by :class:`~fleet.xapi.commands.Xapi` before anything is sent (a command, parameter or value
  the release lacks is never sent: it fails, or reads as absent, without a request);
* by the plans, through :meth:`Firmware.require`, to leave a device alone whose release cannot do
  the verb — ``skipped`` with the release it needs — and through :meth:`Firmware.pick` /
  :meth:`Firmware.accepts` to choose the values the release takes (Wi-Fi ``Type``, ``Connect``,
  the renewal profile's challenge).

A version that cannot be read (an empty or unknown Software Version) is checked against the
NEWEST modelled release: every format RoomOS has used parses, so what does not is most likely a
newer release; the client-side checks still apply, and a device that lacks something refuses it
whole (nothing is half-applied). The oldest model would be worse: its values (9.15's
``Wpa-eap-tls``) are refused by every later release, and it has no SCEP at all. The device's
result says that its release was not known: ``firmware.version`` is null, ``reported`` holds
what the device said and ``release_model`` the model it was checked against.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DeviceSkipped
from .xapi.releases import (
    SUPPORTED,
    ParamSpec,
    ReleaseModel,
    Version,
    model_for,
    product_code,
)
from .xapi.transport import SECRET_PARAMS, ParamValue

__all__ = [
    "Firmware",
    "command_name",
    "config_name",
    "firmware_of",
    "first_release",
    "first_release_configured",
    "problem",
]

PathPart = str | int


def command_name(path: Sequence[str]) -> str:
    """``("Security", "Certificates", "CA", "Add")`` → the schema's ``Security Certificates CA
    Add``."""
    return " ".join(path)


def config_name(path: Sequence[PathPart]) -> str:
    """``("Network", 1, "IEEE8021X", "Mode")`` → ``Network 1 IEEE8021X Mode`` (the release model
    takes this spelling for ``Network[1]``)."""
    return " ".join(str(p) for p in path)


def _dig(data: Any, *keys: str) -> str:
    for key in keys:
        if not isinstance(data, dict):
            return ""
        data = data.get(key)
    return str(data).strip() if isinstance(data, (str, int)) else ""


def _value_problem(name: str, spec: ParamSpec, value: ParamValue) -> str | None:
    values = [value] if isinstance(value, (str, int)) else list(value)
    if len(values) > max(spec.multiple, 1):
        return f"{name} takes at most {spec.multiple} value(s), not {len(values)}"
    for item in values:
        text = str(item)
        if spec.accepts(text):
            continue
        # a secret is never quoted, only measured
        shown = f"{len(text)} characters" if name in SECRET_PARAMS else repr(text)
        if spec.kind == "String" and spec.max_length is not None and len(text) > spec.max_length:
            shown = f"{len(text)} characters"
        return f"{name} {shown} is not accepted (it takes {spec.describe()})"
    return None


def problem(
    model: ReleaseModel, product: str | None, path: Sequence[str],
    params: Mapping[str, ParamValue] | None = None,
) -> str | None:
    """Why ``xCommand path params`` is not in this release for this product (None: it is)."""
    name = command_name(path)
    spec = model.command(name, product)
    if spec is None:
        return f"there is no {name}"
    for key, value in (params or {}).items():
        param = spec.params.get(key)
        if param is None:
            return f"{name} has no parameter {key}"
        why = _value_problem(key, param, value)
        if why:
            return f"{name}: {why}"
    missing = [p.name for p in spec.params.values() if p.required and p.name not in (params or {})]
    if missing:
        return f"{name} needs {', '.join(missing)}"
    return None


def _release_order(product: str | None = None) -> list[str]:
    """The modelled releases, oldest first; with ``product``, only those that run on it (a
    model asked about a product it does not know answers for any product)."""
    def key(release: str) -> tuple[int, ...]:
        parsed = Version.parse(release)
        return parsed.parts if parsed else ()

    return sorted((r for r in SUPPORTED if product is None or product in model_for(r).products),
                  key=key)


def first_release(product: str | None, path: Sequence[str],
                  params: Mapping[str, ParamValue] | None = None) -> str | None:
    """The oldest modelled release in which this product has ``xCommand path params``."""
    for release in _release_order(product):
        if problem(model_for(release), product, path, params) is None:
            return release
    return None


def first_release_configured(product: str | None, path: Sequence[PathPart]) -> str | None:
    """The oldest modelled release in which this product has the configuration ``path``."""
    for release in _release_order(product):
        if model_for(release).configuration(config_name(path), product) is not None:
            return release
    return None


@dataclass(frozen=True)
class Firmware:
    """One device's release and product, as it reported them once in this run."""

    reported: str  # Software Version as the device gives it ("ce11.24.1.5.1234abcd")
    version: Version | None
    product: str  # ProductId ("Cisco Room Bar"), else ProductPlatform
    platform: str
    code: str | None  # the schema's internal product code; None: unknown (any product)
    model: ReleaseModel

    @property
    def known(self) -> bool:
        return self.version is not None

    @property
    def label(self) -> str:
        """The version for people: ``11.24.1.5`` (or what the device said, if unreadable)."""
        return str(self.version) if self.version else (self.reported or "unknown")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": str(self.version) if self.version else None,
            "reported": self.reported,
            "product": self.product,
            "platform": self.platform,
            "product_code": self.code,
            "release_model": self.model.release,
        }

    # -- questions the plans ask ------------------------------------------------------

    def problem(self, path: Sequence[str],
                params: Mapping[str, ParamValue] | None = None) -> str | None:
        return problem(self.model, self.code, path, params)

    def has(self, path: Sequence[str], params: Mapping[str, ParamValue] | None = None) -> bool:
        return self.problem(path, params) is None

    def has_param(self, path: Sequence[str], param: str) -> bool:
        spec = self.model.command(command_name(path), self.code)
        return spec is not None and param in spec.params

    def accepts(self, path: Sequence[str], param: str, value: str) -> bool:
        spec = self.model.command(command_name(path), self.code)
        found = spec.params.get(param) if spec is not None else None
        return found is not None and found.accepts(value)

    def pick(self, path: Sequence[str], param: str, choices: Sequence[str]) -> str | None:
        """The first of ``choices`` (most preferred first) this release takes for ``param``."""
        return next((c for c in choices if self.accepts(path, param, c)), None)

    def has_configuration(self, path: Sequence[PathPart], value: str | None = None) -> bool:
        node = self.model.configuration(config_name(path), self.code)
        if node is None:
            return False
        return value is None or node.value is None or node.value.accepts(value)

    def has_status(self, path: Sequence[PathPart]) -> bool:
        return self.model.status(config_name(path), self.code) is not None

    def require(self, what: str, device: str, path: Sequence[str],
                params: Mapping[str, ParamValue] | None = None) -> None:
        """Skip the device (not a failure) when its release cannot ``xCommand path params``;
        the reason names the release it needs."""
        reason = self.lacks(what, device, path, params)
        if reason is not None:
            raise DeviceSkipped(reason, device=device)

    def lacks(self, what: str, device: str, path: Sequence[str],
              params: Mapping[str, ParamValue] | None = None) -> str | None:
        """None when this release can ``xCommand path params``; else why not, naming the
        release that can ("SCEP enrollment needs RoomOS 11.23.1 or later; room-7 runs ...")."""
        why = self.problem(path, params)
        if why is None:
            return None
        return self._needs(what, device, first_release(self.code, path, params), why)

    def require_configuration(self, what: str, device: str, path: Sequence[PathPart]) -> None:
        """As :meth:`require`, for a configuration the verb cannot do without."""
        if not self.has_configuration(path):
            first = first_release_configured(self.code, path)
            why = f"there is no configuration {config_name(path)}"
            raise DeviceSkipped(self._needs(what, device, first, why), device=device)

    def _needs(self, what: str, device: str, first: str | None, why: str) -> str:
        runs = f"{device} runs {self.label}" + (f" on a {self.product}" if self.product else "")
        if first is None:
            known = _release_order(self.code) or _release_order()
            span = f"RoomOS {known[0]} to {known[-1]}"
            return f"{what} is not available on this product in any release ({span}); {runs}"
        first_version = Version.parse(first)
        if self.version is None or first_version is None or self.version < first_version:
            return f"{what} needs RoomOS {first} or later; {runs}"
        return f"{what} is not available in RoomOS {self.model.release} ({why}); {runs}"


def firmware_of(raw: Mapping[str, Any]) -> Firmware:
    """From the ``Status SystemUnit`` subtree as a transport returns it."""
    reported = _dig(raw, "Software", "Version") or _dig(raw, "Software", "DisplayName")
    product = _dig(raw, "ProductId") or _dig(raw, "ProductPlatform")
    return _firmware(reported, product, _dig(raw, "ProductPlatform"))


@functools.lru_cache(maxsize=1024)
def _firmware(reported: str, product: str, platform: str) -> Firmware:
    """A fleet's devices run a few releases on a few products: each pair is worked out once
    (a Firmware is frozen, so devices may share one)."""
    version = Version.parse(reported) if reported else None
    code = product_code(product, platform or None) if product else None
    # unknown version: the newest model (see the module's docstring for why)
    model = model_for(version if version is not None else _release_order()[-1])
    return Firmware(reported=reported, version=version, product=product, platform=platform,
                    code=code, model=model)

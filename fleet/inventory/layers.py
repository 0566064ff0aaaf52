"""fleet.inventory.layers — the settings of one level (defaults, a group, a device) as
written, and how levels merge: defaults, then each group in the order the device lists them,
then the device's own keys. ``tags`` accumulate; ``certificate`` merges key by key, and its
``subject`` RDN by RDN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from ..secrets import SecretRef
from .model import Verify
from .template import _SAN_KINDS, CertificateTemplate


@dataclass(slots=True)
class _CertLayer:
    key: str | None = None
    subject: dict[str, str] = field(default_factory=dict)
    san_dns: tuple[str, ...] | None = None
    san_ip: tuple[str, ...] | None = None
    san_email: tuple[str, ...] | None = None
    san_uri: tuple[str, ...] | None = None


#: settings that override one another (the last layer that sets one wins)
_SCALARS: Final = (
    "transport",
    "username",
    "password",
    "token",
    "verify",
    "timezone",
    "port",
    "host",
    "device_id",
    "api_url",
    "api_verify",
    "api_rate_per_minute",
)


@dataclass(slots=True)
class _Layer:
    """The settings one level (defaults, a group, a device) sets, as written."""

    line: int = 0
    transport: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    verify: Verify | None = None
    timezone: str | None = None
    port: int | None = None
    host: str | None = None
    device_id: str | None = None
    api_url: str | None = None
    api_verify: Verify | None = None
    api_rate_per_minute: float | None = None
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    certificate: _CertLayer | None = None
    #: settings given but invalid (already reported): later checks must not pile on
    invalid: set[str] = field(default_factory=set)


def _merge(layers: Sequence[_Layer]) -> _Layer:
    out = _Layer(line=layers[-1].line, groups=layers[-1].groups)
    tags: dict[str, None] = {}
    cert: _CertLayer | None = None
    for layer in layers:
        for name in _SCALARS:
            if name in layer.invalid:
                setattr(out, name, None)
                out.invalid.add(name)
            else:
                value = getattr(layer, name)
                if value is not None:
                    setattr(out, name, value)
                    out.invalid.discard(name)
        tags.update(dict.fromkeys(layer.tags))
        if layer.certificate is not None:
            cert = _merge_cert(cert, layer.certificate)
    out.tags = tuple(tags)
    out.certificate = cert
    return out


def _merge_cert(base: _CertLayer | None, top: _CertLayer) -> _CertLayer:
    if base is None:
        return top
    return _CertLayer(
        key=top.key if top.key is not None else base.key,
        subject={**base.subject, **top.subject},
        san_dns=top.san_dns if top.san_dns is not None else base.san_dns,
        san_ip=top.san_ip if top.san_ip is not None else base.san_ip,
        san_email=top.san_email if top.san_email is not None else base.san_email,
        san_uri=top.san_uri if top.san_uri is not None else base.san_uri,
    )


def _template(cert: _CertLayer | None) -> CertificateTemplate:
    if cert is None:
        return CertificateTemplate()
    return CertificateTemplate(
        key=cert.key or "rsa-2048",
        subject=cert.subject,
        san_dns=cert.san_dns or (),
        san_ip=cert.san_ip or (),
        san_email=cert.san_email or (),
        san_uri=cert.san_uri or (),
        host_san=all(getattr(cert, kind) is None for kind in _SAN_KINDS),
    )

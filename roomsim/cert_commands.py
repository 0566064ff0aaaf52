"""`xCommand Security Certificates CA …` and `… Services …` (value spaces from the
RoomOS 26.4.1 schema)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .certs import CertInfo, detail_fields
from .commands import Args, CommandContext, CommandFailed, CommandRegistry, Param
from .store import PURPOSES
from .xml_wire import leaf

REJECTED_BY_POLICY = "Certificate rejected by device policy"

_FORMAT = Param("Format", default="Text", literals=("PEM", "Text"))
_PURPOSE = Param("Purpose", required=True, literals=PURPOSES)


def _details(
    number: int, info: CertInfo, *, used_for: str | None, algorithm: str, pem: bool
) -> ET.Element:
    element = ET.Element("Details", item=str(number), maxOccurrence="n")
    fields = detail_fields(info, algorithm)
    if used_for is not None:
        fields["UsedFor"] = used_for
    if pem:
        fields["PEM"] = info.pem
    for name in sorted(fields):  # the device prints fields in ASCII order
        leaf(element, name, fields[name])
    return element


def _format(value: str) -> ET.Element:
    element = ET.Element("Format")
    element.text = value
    return element


def register(registry: CommandRegistry) -> None:
    ca = "Security/Certificates/CA/"
    services = "Security/Certificates/Services/"

    @registry.register(ca + "Add", multiline=True)
    def ca_add(ctx: CommandContext, args: Args) -> None:
        added = ctx.device.store.add_ca(args.body or "")
        if added:
            ctx.device.save()

    @registry.register(ca + "Delete", Param("Fingerprint", required=True, max_len=128))
    def ca_delete(ctx: CommandContext, args: Args) -> None:
        ctx.device.store.delete_ca(args.get("Fingerprint"))
        ctx.device.save()

    @registry.register(ca + "Show", _FORMAT)
    def ca_show(ctx: CommandContext, args: Args) -> Iterable[ET.Element]:
        pem = args.get("Format") == "PEM"
        items = [
            _details(n, info, used_for=None, algorithm="SHA-1", pem=pem)
            for n, info in enumerate(ctx.device.ca_list, 1)
        ]
        return [*items, _format(args.get("Format"))]

    @registry.register(
        services + "Add", Param("PrivateKeyPassword", default="", max_len=128), multiline=True
    )
    def services_add(ctx: CommandContext, args: Args) -> None:
        if ctx.device.faults.reject_certificates:
            raise CommandFailed(REJECTED_BY_POLICY)
        ctx.device.store.add_service(args.body or "", args.get("PrivateKeyPassword"))
        ctx.device.certificates_changed()

    fingerprint_1024 = Param("Fingerprint", required=True, max_len=1024)

    @registry.register(services + "Activate", fingerprint_1024, _PURPOSE)
    def services_activate(ctx: CommandContext, args: Args) -> None:
        ctx.device.store.activate(args.get("Fingerprint"), args.get("Purpose"))
        ctx.device.certificates_changed()

    @registry.register(services + "Deactivate", fingerprint_1024, _PURPOSE)
    def services_deactivate(ctx: CommandContext, args: Args) -> None:
        ctx.device.store.deactivate(args.get("Fingerprint"), args.get("Purpose"))
        ctx.device.certificates_changed()

    @registry.register(services + "Delete", Param("Fingerprint", required=True, max_len=128))
    def services_delete(ctx: CommandContext, args: Args) -> None:
        ctx.device.store.delete_service(args.get("Fingerprint"))
        ctx.device.certificates_changed()

    @registry.register(
        services + "Show",
        Param("Filter", literals=PURPOSES),
        Param("FingerprintAlgorithm", default="SHA-1", literals=("SHA-1", "SHA-256")),
        _FORMAT,
    )
    def services_show(ctx: CommandContext, args: Args) -> Iterable[ET.Element]:
        wanted = args.get("Filter")
        algorithm = args.get("FingerprintAlgorithm")
        pem = args.get("Format") == "PEM"
        items: list[ET.Element] = []
        for service in ctx.device.services:
            if wanted and wanted not in service.purposes:
                continue
            for info in (service.leaf, *service.chain):
                items.append(
                    _details(
                        len(items) + 1,
                        info,
                        used_for=service.used_for,
                        algorithm=algorithm,
                        pem=pem,
                    )
                )
        return [*items, _format(args.get("Format"))]

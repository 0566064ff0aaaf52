"""`xCommand Security Certificates Services Enrollment …`: SCEP Request, SCEP Profiles Set,
Profiles List and Profiles Delete (value spaces from the RoomOS 26.4.1 schema, §1.3).

Reply shapes: SCEP Request answers `<SCEPRequestResult status="OK"><CertFingerprint>` with
the SHA-1 of the new certificate (lowercase hex), which Cisco's own enrollment macro reads.
Profiles List answers `<ProfilesListResult status="OK"><Profile item="n"><Fingerprint>
<URL></Profile>…`; that shape is not confirmed on a device. No reply ever holds a challenge
password."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from certfleet.fleet.secrets import Secret

from . import enrollment
from .commands import Args, CommandContext, CommandFailed, CommandRegistry, Param
from .enrollment import EnrollmentProfile
from .xml_wire import leaf


def register(registry: CommandRegistry) -> None:
    base = "Security/Certificates/Services/Enrollment/"

    @registry.register(
        base + "SCEP/Request",
        Param("URL", required=True, max_len=256),
        Param("Fingerprint", required=True, max_len=128),
        Param("CommonName", required=True, max_len=64),
        Param("ChallengePassword", max_len=256),
        Param("CountryName", max_len=2),
        Param("StateOrProvinceName", max_len=64),
        Param("LocalityName", max_len=64),
        Param("OrganizationName", max_len=64),
        Param("OrganizationalUnit", max_items=5, max_len=64),
        Param("SanDns", max_items=5, max_len=64),
        Param("SanEmail", max_items=5, max_len=64),
        Param("SanIp", max_items=5, max_len=64),
        Param("SanUri", max_items=5, max_len=64),
    )
    async def scep_request(ctx: CommandContext, args: Args) -> Iterable[ET.Element]:
        if not args.get("CommonName").strip():
            raise CommandFailed("CommonName must not be empty")
        subject = enrollment.build_subject(
            args.get("CommonName"),
            country=args.get("CountryName"),
            state=args.get("StateOrProvinceName"),
            locality=args.get("LocalityName"),
            organization=args.get("OrganizationName"),
            units=args.get_list("OrganizationalUnit"),
        )
        san = enrollment.build_san(
            dns=args.get_list("SanDns"),
            email=args.get_list("SanEmail"),
            ip=args.get_list("SanIp"),
            uri=args.get_list("SanUri"),
        )
        challenge = args.get("ChallengePassword")
        service = await enrollment.enroll(
            ctx.device,
            url=args.get("URL"),
            fingerprint=args.get("Fingerprint"),
            subject=subject,
            san=san,
            challenge=Secret(challenge) if challenge else None,
        )
        fingerprint = ET.Element("CertFingerprint")
        fingerprint.text = service.fingerprint
        return [fingerprint]

    @registry.register(
        base + "SCEP/Profiles/Set",
        Param("Fingerprint", required=True, max_len=128),
        Param("URL", required=True, max_len=256),
        Param("ChallengePassword", max_len=256),
    )
    def profiles_set(ctx: CommandContext, args: Args) -> None:
        """A profile per CA: setting one for a CA that has one replaces it."""
        profile = EnrollmentProfile(
            fingerprint=enrollment.ca_fingerprint(args.get("Fingerprint")),
            url=enrollment.scep_url(args.get("URL")),
            challenge=args.get("ChallengePassword"),
        )
        profiles = ctx.device.profiles
        for index, existing in enumerate(profiles):
            if existing["fingerprint"] == profile["fingerprint"]:
                profiles[index] = profile
                break
        else:
            profiles.append(profile)
        ctx.device.save()

    @registry.register(base + "Profiles/List")
    def profiles_list(ctx: CommandContext, args: Args) -> Iterable[ET.Element]:
        items = []
        for number, profile in enumerate(ctx.device.profiles, 1):
            item = ET.Element("Profile", item=str(number), maxOccurrence="n")
            leaf(item, "Fingerprint", profile["fingerprint"])
            leaf(item, "URL", profile["url"])
            items.append(item)
        return items

    @registry.register(base + "Profiles/Delete", Param("Fingerprint", required=True, max_len=128))
    def profiles_delete(ctx: CommandContext, args: Args) -> None:
        wanted = args.get("Fingerprint")
        fingerprint = enrollment.ca_fingerprint(wanted)
        profiles = ctx.device.profiles
        for profile in profiles:
            if profile["fingerprint"] == fingerprint:
                profiles.remove(profile)
                ctx.device.save()
                return
        raise CommandFailed(f"No enrollment profile with fingerprint {wanted!r}")

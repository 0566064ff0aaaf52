"""fleet.inventory.checks — checks of single values (host, timezone, CA file, DNS names, IP
addresses) and the "did you mean" hints of the inventory's messages."""

from __future__ import annotations

import difflib
import ipaddress
import re
import ssl
import zoneinfo
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Final

from ..files import read_file

_HOST_LABEL_RE: Final = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DNS_LABEL_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_CA_FILE: Final = 16 * 1024 * 1024


def _ca_file_problem(path: Path) -> str | None:
    try:
        data = read_file(path, limit=_MAX_CA_FILE)
    except FileNotFoundError:
        return f"CA file {path} does not exist"
    except IsADirectoryError:
        return f"CA file {path} is a directory"
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot read CA file {path}: {reason}"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return f"CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if _openssl_loads(path):
        return None
    # OpenSSL refused the file (as the TLS context will): cryptography decides, as it always
    # did, whether that is a certificate that does not parse (a file that also holds, say, a
    # key is refused by OpenSSL but not by cryptography). Imported only here: cryptography.x509
    # costs a tenth of a status run's start-up (issue 18).
    try:
        from cryptography import x509

        x509.load_pem_x509_certificates(data)
    except Exception:
        return f"CA file {path} holds a PEM certificate block that does not parse"
    return None


def _openssl_loads(path: Path) -> bool:
    """Whether OpenSSL loads ``path`` as trusted CAs, as the device TLS context will."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        return False
    return True


def _is_dns_name(
    value: str, *, wildcard: bool = False, label: re.Pattern[str] = _DNS_LABEL_RE
) -> bool:
    name = value[:-1] if value.endswith(".") else value
    if wildcard and name.startswith("*."):
        name = name[2:]
    if not name or len(name) > 253:
        return False
    return all(label.fullmatch(part) for part in name.split("."))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _host_problem(host: str) -> str | None:
    if "://" in host or "/" in host:
        return f"host {host!r} must be a host name or IP address, not a URL"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        if bare != host:
            return f"host {host!r}: write the IPv6 address without brackets"
        return None
    if re.fullmatch(r"[^:]+:[0-9]+", host):
        return f"host {host!r}: put the port in port:, not in host"
    if not _is_dns_name(host, label=_HOST_LABEL_RE):
        return f"host {host!r} is not a valid host name or IP address"
    return None


@lru_cache(maxsize=1024)
def _timezone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, OSError for odd keys
        hint = _did_you_mean(name, zoneinfo.available_timezones())
        return f"unknown timezone {name!r}{hint} (IANA names such as Europe/Oslo)"
    return None


@lru_cache(maxsize=4096)
def _key_hint(key: str, allowed: tuple[str, ...]) -> tuple[str, str | None]:
    """For an unknown key: the "did you mean" text and the key it probably meant. Cached: an
    alias used by many devices repeats the same unknown keys many times."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return _did_you_mean(key, allowed), close[0] if close else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    pool = list(choices)
    by_case = {c.lower(): c for c in pool}
    if word.lower() in by_case and by_case[word.lower()] != word:
        return f" (did you mean {by_case[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(items: Sequence[str], limit: int = 30) -> str:
    if not items:
        return "(none)"
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items) - limit} more)"

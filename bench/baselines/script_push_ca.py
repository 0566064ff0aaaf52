"""Baseline "script": what an admin writes to push a CA to many RoomOS devices without certfleet.

    python bench/baselines/script_push_ca.py --devices devices.csv --pem corp-root.pem \
        --username admin --password-file pw.txt --device-ca device-ca.pem [--workers 20]

Written from the RoomOS HTTP API documentation alone (it imports nothing from certfleet): per
device, with HTTP Basic auth on every request and one keep-alive connection,

1. ``POST /putxml`` ``<Command><Security><Certificates><CA><Show/>…`` and look for the CA's
   SHA-1 fingerprint (lower-case hex, as the device prints it) among the ``Fingerprint``
   elements of the reply;
2. if it is missing, ``POST /putxml`` ``… <CA><Add><body>PEM</body></Add> …`` (the PEM
   XML-escaped) and check the reply says ``status="OK"``.

A thread pool of ``--workers`` (20) devices at once. ``devices.csv`` has a header line
``name,host,port``. Prints one JSON document: ``{"ok": n, "changed": n, "failed": n,
"requests": n, "errors": {...}}``; exits 1 when any device failed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import ssl
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape

import httpx

CA_SHOW = "<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>"


def ca_add(pem: str) -> str:
    return ("<Command><Security><Certificates><CA><Add><body>" + escape(pem)
            + "</body></Add></CA></Certificates></Security></Command>")


def sha1_fingerprint(pem: str) -> str:
    return hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def push(device: dict[str, str], pem: str, fingerprint: str, auth: tuple[str, str],
         verify: ssl.SSLContext) -> tuple[str, int]:
    """(outcome, requests made) for one device: "ok" (already there) or "changed"."""
    url = f"https://{device['host']}:{device['port']}/putxml"
    headers = {"Content-Type": "text/xml"}
    with httpx.Client(auth=auth, verify=verify, timeout=120, headers=headers) as client:
        reply = client.post(url, content=CA_SHOW)
        reply.raise_for_status()
        present = {(e.text or "").strip().lower() for e in ET.fromstring(reply.content).iter()
                   if e.tag == "Fingerprint"}
        if fingerprint in present:
            return "ok", 1
        reply = client.post(url, content=ca_add(pem))
        reply.raise_for_status()
        if 'status="OK"' not in reply.text:
            raise RuntimeError(f"CA Add refused: {reply.text[:300]}")
        return "changed", 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=Path, required=True, help="CSV: name,host,port")
    parser.add_argument("--pem", type=Path, required=True, help="the CA certificate to push")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--device-ca", type=Path, required=True,
                        help="CA file that signed the devices' HTTPS certificates")
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args(argv)

    with args.devices.open(newline="") as handle:
        devices = list(csv.DictReader(handle))
    pem = args.pem.read_text()
    fingerprint = sha1_fingerprint(pem)
    auth = (args.username, args.password_file.read_text().strip())
    verify = ssl.create_default_context(cafile=str(args.device_ca))

    def one(device: dict[str, str]) -> tuple[str, str, int, str]:
        try:
            outcome, requests = push(device, pem, fingerprint, auth, verify)
        except Exception as exc:  # a user script reports and goes on
            return device["name"], "failed", 0, f"{type(exc).__name__}: {exc}"[:300]
        return device["name"], outcome, requests, ""

    counts = {"ok": 0, "changed": 0, "failed": 0, "requests": 0}
    errors: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for name, outcome, requests, error in pool.map(one, devices):
            counts[outcome] += 1
            counts["requests"] += requests
            if error:
                errors[name] = error
    print(json.dumps({**counts, "devices": len(devices), "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

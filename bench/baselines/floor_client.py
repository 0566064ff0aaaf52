"""The CPU floor of Python for certfleet's exchange with a device: what it costs this machine to
do nothing but the network part of ``certfleet status`` — a TLS connection per device and the
same six HTTP requests (session begin, getxml, three putxml, session end) — with asyncio
streams, no HTTP library, no XML parsing, no results. No Python client can spend less CPU per
device on this exchange, so it is the yardstick for certfleet's client CPU per device.

    python bench/baselines/floor_client.py --inventory inv.yaml --device-ca ca.pem \
        --password-file pw.txt [--parallel 50]

Prints ``{"devices": n, "ok": n, "requests": n}``; exits 1 if any device failed.

``--loop uvloop`` runs the same code on uvloop's loop (certfleet's own where uvloop is
installed): the benchmark's yardstick stays asyncio's loop, and this figure says how much of
certfleet's distance to it the loop alone makes up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import sys
from pathlib import Path

import yaml

SHOW = {
    "services": b"<Command><Security><Certificates><Services><Show/></Services>"
                b"</Certificates></Security></Command>",
    "cas": b"<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>",
    "profiles": b"<Command><Security><Certificates><Services><Enrollment><Profiles><List/>"
                b"</Profiles></Enrollment></Services></Certificates></Security></Command>",
}


async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                  path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    head = [f"{method} {path} HTTP/1.1", "Host: device", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    cookie = b""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "set-cookie" and value.strip().startswith("SessionId="):
            cookie = value.strip().split(";", 1)[0].encode()
    content = await reader.readexactly(length) if length else b""
    return status, cookie or content


async def one(host: str, port: int, ctx: ssl.SSLContext, auth: str) -> int:
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        status, cookie = await request(reader, writer, "POST", "/xmlapi/session/begin",
                                       {"Authorization": auth})
        if status not in (200, 204) or not cookie:
            raise RuntimeError(f"session begin answered {status}")
        session = {"Cookie": cookie.decode()}
        xml = {**session, "Content-Type": "text/xml"}
        status, _ = await request(reader, writer, "GET",
                                  "/getxml?location=/Status/SystemUnit", session)
        for body in SHOW.values():
            status, _ = await request(reader, writer, "POST", "/putxml", xml, body)
            if status != 200:
                raise RuntimeError(f"putxml answered {status}")
        await request(reader, writer, "POST", "/xmlapi/session/end", session)
        return 6
    finally:
        writer.close()


async def main(args: argparse.Namespace) -> int:
    # libyaml's loader where PyYAML has it: reading a 1,000-device inventory with the pure
    # Python one cost 0.6 s, a fifth of this client's CPU, none of it the exchange
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(Path(args.inventory).read_text(), Loader=loader)
    devices = [(str(d["host"]), int(d["port"])) for d in data["devices"].values()]
    ctx = ssl.create_default_context(cafile=args.device_ca)
    password = Path(args.password_file).read_text().strip()
    auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
    gate = asyncio.Semaphore(args.parallel)
    failed: list[str] = []

    async def guarded(host: str, port: int) -> int:
        async with gate:
            try:
                return await one(host, port, ctx, auth)
            except Exception as exc:  # counted and reported, not raised
                failed.append(f"{host}:{port}: {exc}")
                return 0

    counts = await asyncio.gather(*(guarded(h, p) for h, p in devices))
    print(json.dumps({"devices": len(devices), "ok": len(devices) - len(failed),
                      "requests": sum(counts), "errors": failed[:5]}))
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--device-ca", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    arguments = parser.parse_args()
    factory = None
    if arguments.loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        sys.exit(runner.run(main(arguments)))

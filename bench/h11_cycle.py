"""What h11 alone costs per device: the request/reply cycle certfleet's local client runs
through h11 (issue 16 made h11 its HTTP/1.1 framing), six times per device as ``status``
does, with requests and replies shaped as certfleet's and roomsim's are, and no network,
TLS, XML or event loop at all. The benchmark prints it beside the floor client's CPU per
device: the part of certfleet's distance to that floor that the framing library takes.

    python bench/h11_cycle.py          # prints {"h11_ms_per_device": ...}
"""

from __future__ import annotations

import json
import time

import h11

#: a reply as roomsim sends one (aiohttp's headers, an XML body of a Services Show's size)
_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 1200\r\n"
          b"Date: Mon, 07 Dec 2026 05:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.14\r\n\r\n"
          + b"x" * 1200)
_HEADERS = [(b"Host", b"127.0.0.1:4443"), (b"User-Agent", b"certfleet/0.1.0"),
            (b"Content-Length", b"120"), (b"Cookie", b"SessionId=0123456789abcdef0123456789"),
            (b"Content-Type", b"text/xml")]
_BODY = b"y" * 120


def h11_ms_per_device(devices: int = 1000, requests: int = 6) -> float:
    """CPU milliseconds per device for ``requests`` h11 cycles on one connection each."""
    end = h11.EndOfMessage()
    start = time.process_time()
    for _ in range(devices):
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        for _ in range(requests):
            request = h11.Request(method="POST", target="/putxml", headers=_HEADERS)
            connection.send(request)
            connection.send(h11.Data(data=_BODY))
            connection.send(end)
            connection.receive_data(_REPLY)
            while type(connection.next_event()) is not h11.EndOfMessage:
                pass
            connection.start_next_cycle()
    return (time.process_time() - start) * 1000 / devices


if __name__ == "__main__":
    print(json.dumps({"h11_ms_per_device": round(h11_ms_per_device(), 4)}))

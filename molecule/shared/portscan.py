#!/usr/bin/env python3
"""Which TCP ports of a server answer: a connect scan of every port (or a given range), many
at once, standard library only, so it runs on the machine itself and inside a prober
container (`docker exec -i PROBER python3 - TARGET < portscan.py`).

  portscan.py TARGET [--ports 1-65535] [--timeout 1.5] [--concurrency 4096]

TARGET is a name, an IPv4 address or a scoped IPv6 address (fe80::1%eth0). Prints one JSON
object: {"open": [ports that accepted a connection], "scanned": N, "seconds": S}. A port that
refuses (RST) or drops (no answer within the timeout) is closed; any other error makes the
scan fail, since a scan that cannot tell is no proof that a port is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import socket
import sys
import time

CLOSED_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}


def parse_ports(text: str) -> list:
    ports = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        ports += range(int(low), int(high or low) + 1)
    if not ports or min(ports) < 1 or max(ports) > 65535:
        raise ValueError(f"ports must lie between 1 and 65535: {text}")
    return ports


async def _probe(family: int, address: tuple, port: int, timeout: float, limit: asyncio.Semaphore) -> str:
    async with limit:
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address[0], port, *address[2:])), timeout)
            return "open"
        except asyncio.TimeoutError:
            return settled(sock)
        except OSError as exc:
            if exc.errno in CLOSED_ERRNOS:
                return "refused"
            return f"error {errno.errorcode.get(exc.errno, exc.errno)}"
        finally:
            sock.close()


def settled(sock: socket.socket) -> str:
    """What the kernel knows of a non-blocking connect whose wait timed out. On a busy machine
    the event loop can run the timeout before it gets to a connection that the kernel has
    already completed (or refused): that port is open (or refused), not dropped."""
    try:
        sock.getpeername()
        return "open"
    except OSError:
        pass
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err in CLOSED_ERRNOS:
        return "refused"
    if err:
        return f"error {errno.errorcode.get(err, err)}"
    return "dropped"


async def _scan(target: str, ports: list, timeout: float, concurrency: int) -> dict:
    family, _, _, _, address = socket.getaddrinfo(target, None, type=socket.SOCK_STREAM)[0]
    limit = asyncio.Semaphore(concurrency)
    states = await asyncio.gather(*(_probe(family, address, port, timeout, limit) for port in ports))
    return dict(zip(ports, states))


def scan(target: str, ports=range(1, 65536), timeout: float = 1.5, concurrency: int = 4096) -> dict:
    """{port: "open" | "refused" | "dropped" | "error ..."} for every port scanned."""
    return asyncio.run(_scan(target, list(ports), timeout, concurrency))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target")
    parser.add_argument("--ports", default="1-65535", help="ports or ranges, e.g. 1-1024,8080 (default: all)")
    parser.add_argument("--timeout", type=float, default=1.5, help="seconds before a port counts as dropped")
    parser.add_argument("--concurrency", type=int, default=4096, help="connections in flight at once")
    args = parser.parse_args(argv)
    start = time.monotonic()
    states = scan(args.target, parse_ports(args.ports), args.timeout, args.concurrency)
    errors = {port: state for port, state in states.items() if state.startswith("error")}
    result = {"open": sorted(p for p, s in states.items() if s == "open"), "scanned": len(states),
              "seconds": round(time.monotonic() - start, 1)}
    if errors:
        result["errors"] = {str(p): s for p, s in sorted(errors.items())[:20]}
        print(json.dumps(result))
        print(f"portscan: {len(errors)} port(s) could not be told open or closed", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

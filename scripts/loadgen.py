#!/usr/bin/env python3
"""Constant HTTPS load on one URL path: what visitors see while a deploy runs.

Sends GET requests at a fixed rate (each on a new TLS connection, as a fresh visitor does),
whatever the server's latency, from a pool of threads. The server is reached at an address
of your choice with the site's name for SNI and Host, so no DNS is needed; the certificate is
verified against the CA file given. A request fails when it raises (refused, reset, timeout,
TLS error) or answers anything but 200. Prints the count of requests and failures, latency
percentiles and the versions seen in JSON bodies ("version" key), in order.

  loadgen.py --address 172.18.0.5 --name app.example.test --cafile root.pem --seconds 30
  loadgen.py ... --rate 50 --path /health --json      # machine-readable summary

Also a module: Load(...).start(); ...; summary = load.stop().
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


class _Connection(http.client.HTTPSConnection):
    """HTTPS to ADDRESS with NAME for SNI and certificate checks."""

    def __init__(self, address: str, name: str, context: ssl.SSLContext, timeout: float):
        super().__init__(address, 443, context=context, timeout=timeout)
        self._name = name
        self._context = context

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._name)


def percentile(values: list, pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


class Load:
    def __init__(self, address: str, name: str, cafile: str | None, path: str = "/health",
                 rate: float = 50.0, timeout: float = 10.0, workers: int = 64):
        self.address, self.name, self.path = address, name, path
        self.rate, self.timeout = rate, timeout
        self.context = ssl.create_default_context(cafile=cafile)
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.results: list = []  # (start offset s, ok, status or error, latency s, version)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.started = 0.0
        self.futures: list = []

    def _one(self, offset: float) -> None:
        start = time.monotonic()
        status, version = "", ""
        try:
            conn = _Connection(self.address, self.name, self.context, self.timeout)
            try:
                conn.request("GET", self.path, headers={"Host": self.name, "Connection": "close",
                                                        "User-Agent": "shipshape-loadgen"})
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
            finally:
                conn.close()
            try:
                version = str(json.loads(body).get("version", ""))
            except (ValueError, AttributeError):
                version = ""
            ok = status == 200
        except Exception as exc:  # every failure a visitor would see counts
            ok, status = False, f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.results.append((offset, ok, status, time.monotonic() - start, version))

    def _schedule(self) -> None:
        interval = 1.0 / self.rate
        n = 0
        while not self.stopping.is_set():
            due = self.started + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.futures.append(self.pool.submit(self._one, due - self.started))
            n += 1

    def start(self) -> "Load":
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._schedule, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> dict:
        self.stopping.set()
        if self.thread:
            self.thread.join()
        for fut in self.futures:
            fut.result()
        self.pool.shutdown()
        return self.summary()

    def summary(self) -> dict:
        with self.lock:
            results = sorted(self.results)
        latencies = [r[3] for r in results if r[1]]
        failures = [r for r in results if not r[1]]
        versions, first_seen = [], {}
        for r in results:
            if r[1] and r[4] and (not versions or versions[-1] != r[4]):
                versions.append(r[4])
            if r[1] and r[4]:
                first_seen.setdefault(r[4], round(r[0], 1))
        duration = results[-1][0] if results else 0.0
        return {
            "requests": len(results),
            "failed": len(failures),
            "rate": round(len(results) / duration, 1) if duration else 0.0,
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p95_ms": round(percentile(latencies, 95) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1) if latencies else 0.0,
            "versions": versions,
            # Seconds from the start of the load to the first good answer of each version.
            "first_seen": first_seen,
            "failures": [f"+{r[0]:.2f}s {r[2]}" for r in failures[:20]],
        }


def describe(summary: dict) -> str:
    return (f"{summary['requests']} requests ({summary['rate']}/s), {summary['failed']} failed; "
            f"latency p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, p99 {summary['p99_ms']} ms, "
            f"max {summary['max_ms']} ms; versions seen: {' -> '.join(v[:12] for v in summary['versions']) or '-'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="IP address or host to connect to (port 443)")
    parser.add_argument("--name", required=True, help="the site's name (SNI, Host, certificate)")
    parser.add_argument("--cafile", help="CA certificates to verify against (default: the system's)")
    parser.add_argument("--path", default="/health", help="URL path (default /health)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    load = Load(args.address, args.name, args.cafile, args.path, args.rate).start()
    time.sleep(args.seconds)
    summary = load.stop()
    print(json.dumps(summary, indent=2) if args.json else describe(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Probes of the edge from the controller: TLS and HTTP to its address on the scenario
network, with the SNI and Host header of a configured name, as a client on the internet."""

from __future__ import annotations

import http.client as httpclient
import json
import socket
import ssl
import urllib.request
from pathlib import Path

import testlib

EDGE = "tls-debian13"
ACME = "tls-acme"
NAMES = ["app.example.test", "www.app.example.test"]
PEBBLE_TLS_CERT = "/etc/ssl/acme-test/pebble-tls.pem"


def tls_context(cafile: Path | str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = True
    return ctx


def served_cert(ip: str, name: str, cafile: Path | str) -> dict:
    """The certificate the edge serves for SNI `name`, verified against `cafile`."""
    with socket.create_connection((ip, 443), timeout=10) as sock:
        with tls_context(cafile).wrap_socket(sock, server_hostname=name) as tls:
            return tls.getpeercert()


def sans(cert: dict) -> set[str]:
    return {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}


def issuer_cn(cert: dict) -> str:
    return dict(item[0] for item in cert["issuer"]).get("commonName", "")


class _Conn(httpclient.HTTPSConnection):
    """HTTPS to the edge's address with the SNI and Host of `name`."""

    def __init__(self, ip, name, cafile):
        super().__init__(name, 443, timeout=10, context=tls_context(cafile))
        self._ip = ip

    def connect(self):
        sock = socket.create_connection((self._ip, 443), timeout=self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def https(ip: str, name: str, cafile, path: str = "/", method: str = "GET",
          headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = _Conn(ip, name, cafile)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def http_get(ip: str, host: str, path: str = "/") -> tuple[int, dict, bytes]:
    conn = httpclient.HTTPConnection(ip, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def echoed(body: bytes) -> dict:
    """What the echo app behind nginx received."""
    return json.loads(body)


def pebble_root_pem() -> str:
    """Pebble's current root CA, from its management API (it changes at each start)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://{testlib.container_ip(ACME)}:15000/roots/0"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        pem = resp.read().decode()
    assert "BEGIN CERTIFICATE" in pem
    return pem

"""Probes of an edge from the controller: TLS and HTTP to its address on the scenario
network, with the SNI and Host header of a configured name, as a client on the internet.
The names below are the tls scenario's; the functions take any edge and ACME host."""

from __future__ import annotations

import base64
import hashlib
import http.client as httpclient
import json
import os
import socket
import ssl
import urllib.request
from pathlib import Path

import testlib

EDGE = "tls-debian13"
ACME = "tls-acme"
NAMES = ["app.example.test", "www.app.example.test"]
PEBBLE_TLS_CERT = "/etc/ssl/acme-test/pebble-tls.pem"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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

    def __init__(self, ip, name, cafile, timeout=10):
        super().__init__(name, 443, timeout=timeout, context=tls_context(cafile))
        self._ip = ip

    def connect(self):
        sock = socket.create_connection((self._ip, 443), timeout=self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def https(ip: str, name: str, cafile, path: str = "/", method: str = "GET",
          headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict, bytes]:
    conn = _Conn(ip, name, cafile)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_body(ip: str, name: str, cafile, path: str, size: int) -> tuple[int, dict, bytes]:
    """POST a body of `size` bytes over HTTPS. nginx answers 413 as soon as it reads the
    Content-Length, so a connection closed while the body is still being sent is no error:
    the answer is read all the same."""
    conn = _Conn(ip, name, cafile, timeout=120)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        chunk = b"x" * 65536
        try:
            for start in range(0, size, len(chunk)):
                conn.send(chunk[:min(len(chunk), size - start)])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def websocket_accept(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to Sec-WebSocket-Key `key` (RFC 6455)."""
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


def websocket_echo(ip: str, name: str, cafile, path: str,
                   message: bytes) -> tuple[str, dict, str, list[tuple[int, bytes]]]:
    """A WebSocket session through the edge over TLS: the handshake, then one masked text
    frame with `message` (under 126 bytes) and a close frame. Returns the status line, the
    response headers, the Sec-WebSocket-Key sent and the frames the server sent back as
    (first byte: FIN and opcode, payload); no frames when the answer is not 101."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((ip, 443), timeout=10) as sock:
        with tls_context(cafile).wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall((f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            stream = tls.makefile("rb")
            status = stream.readline().decode("latin-1").strip()
            headers = {}
            while line := stream.readline().decode("latin-1").strip():
                field, _, value = line.partition(":")
                headers[field.strip().lower()] = value.strip()
            if status.split()[1:2] != ["101"]:
                return status, headers, key, []
            frames = []
            for opcode, payload in ((0x1, message), (0x8, b"")):
                mask = os.urandom(4)
                tls.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                head = stream.read(2)
                length = head[1] & 0x7F
                if length >= 126:
                    length = int.from_bytes(stream.read(2 if length == 126 else 8), "big")
                mask = stream.read(4) if head[1] & 0x80 else bytes(4)
                frames.append((head[0], bytes(b ^ mask[i % 4] for i, b in enumerate(stream.read(length)))))
            return status, headers, key, frames


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


def pebble_root_pem(acme: str = ACME) -> str:
    """Pebble's current root CA, from its management API on host *acme* (it changes at each start)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://{testlib.container_ip(acme)}:15000/roots/0"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        pem = resp.read().decode()
    assert "BEGIN CERTIFICATE" in pem
    return pem

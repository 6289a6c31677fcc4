#!/usr/bin/python
"""Ansible module of the verify role: HTTPS requests as a client on the internet makes them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify_https
short_description: Send HTTPS requests to a site and report status, headers and the served certificate
description:
  - Connects to O(address) (or to O(name) when no address is given), sends O(name) as the TLS
    server name and the Host header, verifies the certificate chain against O(ca_path) (or the
    system's trust store) and the host name against O(name), and sends O(count) requests for O(path).
  - Redirects are not followed. Nothing changes anywhere; the module never reports a change.
  - It fails only when no HTTPS exchange is possible (connection refused or timed out, certificate
    not trusted or not issued for O(name)); status codes and headers are for the caller to judge.
options:
  name:
    description: Host name of the site (TLS server name, certificate check and Host header).
    type: str
    required: true
  address:
    description: Address to connect to instead of resolving O(name), as C(curl --resolve) does.
    type: str
    default: ""
  port:
    description: TCP port of the HTTPS server.
    type: int
    default: 443
  path:
    description: Path (and query) requested.
    type: str
    default: /
  method:
    description: HTTP method.
    type: str
    default: GET
  ca_path:
    description: PEM file of the CAs that verify the certificate; empty uses the system's trust store.
    type: path
    default: ""
  timeout:
    description: Seconds each connection and request may take.
    type: int
    default: 10
  count:
    description: Number of requests sent one after the other (each on a new connection), e.g. to trip a rate limit.
    type: int
    default: 1
  body_limit:
    description: Bytes of the body of the last response returned in RV(content).
    type: int
    default: 65536
author: shipshape
"""

RETURN = r"""
status:
  description: Status code of the last response.
  type: int
  returned: success
statuses:
  description: Status codes of all responses, in order.
  type: list
  elements: int
  returned: success
headers:
  description: Headers of the last response, names in lower case.
  type: dict
  returned: success
content:
  description: Start of the body of the last response (text, undecodable bytes replaced).
  type: str
  returned: success
json:
  description: Body of the last response parsed as JSON, when it is JSON.
  type: raw
  returned: when the body is JSON
certificate:
  description: The certificate the server presented (subject, issuer, DNS names, validity).
  type: dict
  returned: success
  contains:
    not_before:
      description: Start of validity, ISO 8601 in UTC.
      type: str
    not_after:
      description: End of validity, ISO 8601 in UTC.
      type: str
    days_left:
      description: Whole days until not_after.
      type: int
    subject:
      description: Subject common name.
      type: str
    issuer:
      description: Issuer common name.
      type: str
    dns_names:
      description: DNS names of the subjectAltName extension.
      type: list
      elements: str
url:
  description: The URL requested (with the name, not the address).
  type: str
  returned: always
"""

import datetime
import http.client
import json
import socket
import ssl

from ansible.module_utils.basic import AnsibleModule


class _Connection(http.client.HTTPSConnection):
    """HTTPS to a given address, with the TLS server name and Host header of the site."""

    def __init__(self, name, address, port, timeout, context):
        super().__init__(name, port, timeout=timeout, context=context)
        self._address = address or name

    def connect(self):
        sock = socket.create_connection((self._address, self.port), timeout=self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _when(text):
    return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), tz=datetime.timezone.utc)


def _describe(cert):
    def common_name(part):
        for rdn in cert.get(part, ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return ""

    not_after = _when(cert["notAfter"])
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    return {
        "not_before": _when(cert["notBefore"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": (not_after - now).days,
        "subject": common_name("subject"),
        "issuer": common_name("issuer"),
        "dns_names": [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"],
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "address": {"type": "str", "default": ""},
            "port": {"type": "int", "default": 443},
            "path": {"type": "str", "default": "/"},
            "method": {"type": "str", "default": "GET"},
            "ca_path": {"type": "path", "default": ""},
            "timeout": {"type": "int", "default": 10},
            "count": {"type": "int", "default": 1},
            "body_limit": {"type": "int", "default": 65536},
        },
        supports_check_mode=True,
    )
    params = module.params
    port_part = "" if params["port"] == 443 else f":{params['port']}"
    url = f"https://{params['name']}{port_part}{params['path']}"
    where = f"{params['address']} port {params['port']}" if params["address"] else f"port {params['port']}"
    try:
        context = ssl.create_default_context(cafile=params["ca_path"] or None)
    except (OSError, ssl.SSLError) as exc:
        module.fail_json(msg=f"cannot read the CA bundle {params['ca_path']}: {exc}", url=url, changed=False)

    statuses = []
    status, headers, body, cert = 0, {}, b"", None
    for _ in range(max(1, params["count"])):
        conn = _Connection(params["name"], params["address"], params["port"], params["timeout"], context)
        try:
            conn.request(params["method"], params["path"],
                         headers={"User-Agent": "shipshape-verify", "Connection": "close"})
            if cert is None:
                cert = conn.sock.getpeercert()
            resp = conn.getresponse()
            status = resp.status
            headers = {key.lower(): value for key, value in resp.getheaders()}
            body = resp.read(params["body_limit"])
        except ssl.SSLCertVerificationError as exc:
            module.fail_json(msg=f"{url} ({where}): the certificate did not verify: {exc.verify_message}",
                             url=url, changed=False)
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            module.fail_json(msg=f"{url} ({where}): no HTTPS answer: {exc}", url=url, changed=False)
        finally:
            conn.close()
        statuses.append(status)

    result = {
        "changed": False,
        "url": url,
        "status": status,
        "statuses": statuses,
        "headers": headers,
        "content": body.decode("utf-8", errors="replace"),
        "certificate": _describe(cert) if cert else {},
    }
    if "json" in headers.get("content-type", ""):
        try:
            result["json"] = json.loads(body)
        except ValueError:
            pass
    module.exit_json(**result)


if __name__ == "__main__":
    main()

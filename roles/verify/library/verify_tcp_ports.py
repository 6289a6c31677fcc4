#!/usr/bin/python
"""Ansible module of the verify role: which TCP ports of an address accept a connection."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: verify_tcp_ports
short_description: Find out which TCP ports of an address accept connections
description:
  - Tries a TCP connection to each port of O(ports) on O(address), all at once, and reports
    the ports that accepted one and the ports that refused or did not answer within O(timeout)
    (a firewall that drops packets).
  - A connection is closed as soon as it is open; no data is sent. Nothing changes anywhere.
options:
  address:
    description: Host name or IP address probed.
    type: str
    required: true
  ports:
    description: TCP ports probed.
    type: list
    elements: int
    required: true
  timeout:
    description: Seconds a connection attempt may take before the port counts as closed.
    type: float
    default: 3
  expect_open:
    description:
      - Ports that should answer. One of them that did not is tried once more, with twice
        O(timeout), before it counts as closed (a lost packet is not a closed port).
    type: list
    elements: int
    default: []
author: shipshape
"""

RETURN = r"""
open:
  description: Ports that accepted a connection, in ascending order.
  type: list
  elements: int
  returned: always
closed:
  description: Ports that refused or did not answer, in ascending order.
  type: list
  elements: int
  returned: always
"""

import socket
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule


def _accepts(address, port, timeout):
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe(address, ports, timeout) -> set:
    """The ports of *ports* that accept a connection, all tried at once."""
    if not ports:
        return set()
    with ThreadPoolExecutor(max_workers=min(32, len(ports))) as pool:
        answers = list(pool.map(lambda port: _accepts(address, port, timeout), ports))
    return {port for port, ok in zip(ports, answers) if ok}


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "ports": {"type": "list", "elements": "int", "required": True},
            "timeout": {"type": "float", "default": 3},
            "expect_open": {"type": "list", "elements": "int", "default": []},
        },
        supports_check_mode=True,
    )
    address, timeout = module.params["address"], module.params["timeout"]
    ports = sorted(set(module.params["ports"]))
    try:
        socket.getaddrinfo(address, None)
    except OSError as exc:
        module.fail_json(msg=f"cannot resolve {address}: {exc}", changed=False)
    answered = probe(address, ports, timeout)
    again = [port for port in ports if port in module.params["expect_open"] and port not in answered]
    answered |= probe(address, again, 2 * timeout)
    module.exit_json(
        changed=False,
        open=[port for port in ports if port in answered],
        closed=[port for port in ports if port not in answered],
    )


if __name__ == "__main__":
    main()

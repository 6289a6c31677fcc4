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


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "ports": {"type": "list", "elements": "int", "required": True},
            "timeout": {"type": "float", "default": 3},
        },
        supports_check_mode=True,
    )
    address, timeout = module.params["address"], module.params["timeout"]
    ports = sorted(set(module.params["ports"]))
    try:
        socket.getaddrinfo(address, None)
    except OSError as exc:
        module.fail_json(msg=f"cannot resolve {address}: {exc}", changed=False)
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(ports)))) as pool:
        answers = list(pool.map(lambda port: _accepts(address, port, timeout), ports))
    module.exit_json(
        changed=False,
        open=[port for port, ok in zip(ports, answers) if ok],
        closed=[port for port, ok in zip(ports, answers) if not ok],
    )


if __name__ == "__main__":
    main()

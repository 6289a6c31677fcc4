"""Containers in the inner engine: a published port without a host address stays on
127.0.0.1, on neither every IPv4 nor every IPv6 address (probed from the controller across
the scenario network over both), log rotation applies to every container, live-restore is
on, metrics answer only locally."""

import errno
import json
import os
import socket
import subprocess

import testlib
from conftest import INSTANCE, ok, wait_http

testinfra_hosts = [f"ansible://{INSTANCE}"]


def connect(address: str, port: int) -> int:
    """0 if a TCP connection to address:port succeeds, else the errno (or -1 on timeout).
    address is an IPv4 address or a scoped IPv6 one (fe80::1%br-...)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            return sock.connect_ex(sockaddr)
        except socket.timeout:
            return -1


def outside_addresses() -> dict:
    """The instance's addresses as this machine reaches them: {family: address}."""
    network = f"shipshape-{os.environ['MOLECULE_SCENARIO_NAME']}"
    network_id = subprocess.run(["docker", "network", "inspect", "-f", "{{.Id}}", network],
                                capture_output=True, text=True, check=True).stdout.strip()
    return {"IPv4": testlib.container_ip(INSTANCE),
            "IPv6": testlib.link_local_address(INSTANCE, via=f"br-{network_id[:12]}")}


def published(container: str) -> list:
    """Every host binding of a container's ports, as `docker port` lists them."""
    return sorted(ok(f"docker port {container}").splitlines())


def listening(port: int) -> set:
    """The local addresses with a TCP listener on port."""
    return {line.split()[3] for line in ok(f"ss -Hltn 'sport = :{port}'").splitlines()}


def test_port_without_host_address_binds_loopback(web):
    # Exactly one binding, on IPv4 loopback: a publish on every IPv4 or IPv6 address would
    # be listed beside it, as the control container's are.
    assert published(web) == ["8000/tcp -> 127.0.0.1:8080"]
    assert published("web-public") == ["8000/tcp -> 0.0.0.0:8081", "8000/tcp -> [::]:8081"]


def test_listener_is_on_loopback_only(web):
    assert listening(8080) == {"127.0.0.1:8080"}
    assert listening(8081) == {"0.0.0.0:8081", "[::]:8081"}  # the control, on every address


def test_port_answers_on_the_host(web):
    wait_http("http://127.0.0.1:8080/")


def test_port_does_not_answer_from_outside(web):
    for family, address in outside_addresses().items():
        # The control container, published on every address on purpose, answers from here:
        # the probe can see an open port, over either family.
        assert connect(address, 8081) == 0, family
        assert connect(address, 8080) in (errno.ECONNREFUSED, -1), family


def test_container_logs_are_rotated(web):
    log_config = json.loads(ok(f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' {web}"))
    assert log_config == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}


def test_live_restore_is_on():
    assert ok("docker info --format '{{.LiveRestoreEnabled}}'") == "true"


def test_metrics_answer_only_locally():
    ok("python3 -c \"import urllib.request as u; "
       "assert b'engine_daemon_engine_info' in u.urlopen('http://127.0.0.1:9323/metrics').read()\"")
    for family, address in outside_addresses().items():
        assert connect(address, 9323) in (errno.ECONNREFUSED, -1), family


def test_new_networks_come_from_the_configured_pool():
    # Compose creates a network per project; it must find a subnet in the pool.
    import ipaddress

    ok("docker network create shipshape-pool-test")
    try:
        subnet = ok("docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' shipshape-pool-test")
        assert ipaddress.ip_network(subnet.strip()).subnet_of(ipaddress.ip_network("172.20.0.0/14")), subnet
        assert subnet.strip().endswith("/24")
    finally:
        ok("docker network rm shipshape-pool-test")

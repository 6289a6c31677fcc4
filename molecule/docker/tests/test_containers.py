"""Containers in the inner engine: a published port without a host address stays on
127.0.0.1 (probed from the controller across the scenario network), log rotation applies to
every container, live-restore is on, metrics answer only locally."""

import errno
import json
import socket

import testlib
from conftest import INSTANCE, ok, wait_http

testinfra_hosts = [f"ansible://{INSTANCE}"]


def connect(address: str, port: int) -> int:
    """0 if a TCP connection to address:port succeeds, else the errno (or -1 on timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            return sock.connect_ex((address, port))
        except socket.timeout:
            return -1


def test_port_without_host_address_binds_loopback(web):
    assert ok(f"docker port {web} 8000/tcp").split() == ["127.0.0.1:8080"]


def test_listener_is_on_loopback_only(web):
    listeners = ok("ss -Hltn 'sport = :8080'")
    addresses = {line.split()[3] for line in listeners.splitlines()}
    assert addresses == {"127.0.0.1:8080"}, listeners


def test_port_answers_on_the_host(web):
    wait_http("http://127.0.0.1:8080/")


def test_port_does_not_answer_from_outside(web):
    address = testlib.container_ip(INSTANCE)
    # The control container, published on every address on purpose, answers from here:
    # the probe can see an open port.
    assert connect(address, 8081) == 0
    assert connect(address, 8080) in (errno.ECONNREFUSED, -1)


def test_container_logs_are_rotated(web):
    log_config = json.loads(ok(f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' {web}"))
    assert log_config == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}


def test_live_restore_is_on():
    assert ok("docker info --format '{{.LiveRestoreEnabled}}'") == "true"


def test_metrics_answer_only_locally():
    ok("python3 -c \"import urllib.request as u; "
       "assert b'engine_daemon_engine_info' in u.urlopen('http://127.0.0.1:9323/metrics').read()\"")
    assert connect(testlib.container_ip(INSTANCE), 9323) in (errno.ECONNREFUSED, -1)


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

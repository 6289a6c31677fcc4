"""The firewall role, proved from outside: probes come from the prober container.

prepare.yml planted a stray listener on 8081, web listeners on 80 and 443 (each on IPv4 and
IPv6), and a container that Docker publishes on 8080 (Docker's NAT bypasses UFW's input
chain). After the role, only 22, 80 and 443 may answer from the prober: every TCP port is
scanned to prove it, so a hole nobody planted shows as well. Published container ports answer
only when ufw_allow_rules lists them, whether Docker started before or after UFW. Every probe
goes to the host's IPv4 address and to its IPv6 (link-local) address: UFW filters IPv6 with
its own rules (ip6tables), and a hole there is a hole all the same.

The tests run on the firewalled hosts only (testinfra_hosts); the prober is the outside.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402

HARDENED = ["ufw-debian13", "ufw-debian12"]
PROBER = "ufw-prober"
IMAGE = "shipshape/host:debian13"
# What may answer from outside: SSH and the web.
ALLOWED = [22, 80, 443]

testinfra_hosts = [f"ansible://{name}" for name in HARDENED]

# Runs on the prober: TCP connect to each port of a target (a name, an IPv4 address or a
# scoped IPv6 address), in parallel, short timeout.
PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
target, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
def probe(port):
    family, _, _, _, address = socket.getaddrinfo(target, port, type=socket.SOCK_STREAM)[0]
    s = socket.socket(family)
    s.settimeout(2)
    try:
        s.connect(address)
        return "open"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()
with ThreadPoolExecutor(len(ports)) as pool:
    print(json.dumps(dict(zip(map(str, ports), pool.map(probe, ports)))))
"""

# Runs on a firewalled host or in a container: HTTP GET, prints the status or the error.
FETCH = r"""
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.fixture(scope="module")
def prober():
    return testinfra.get_host(f"docker://{PROBER}")


@pytest.fixture
def name(host):
    return host.backend.get_hostname()


@pytest.fixture
def box(name):
    """The firewalled host, reached with `docker exec` (faster than Ansible per command)."""
    return testinfra.get_host(f"docker://{name}")


def probe(prober, target: str, *ports: int) -> dict[int, str]:
    out = prober.check_output("python3 -c %s %s" + " %s" * len(ports), PROBE, target, *map(str, ports))
    return {int(k): v for k, v in json.loads(out).items()}


def addresses(name: str) -> dict[str, str]:
    """The host's addresses on the scenario network, by family."""
    return {"IPv4": testlib.container_ip(name), "IPv6": testlib.link_local_address(name)}


def probe_both(prober, name: str, *ports: int) -> dict[str, dict[int, str]]:
    """probe() on the host's IPv4 and IPv6 addresses: {family: {port: state}}."""
    return {family: probe(prober, address, *ports) for family, address in addresses(name).items()}


def open_from_outside(name: str) -> dict[str, list[int]]:
    """Every TCP port of the host that accepts a connection from the prober, by family: all
    65535 ports are scanned on each address."""
    return {family: testlib.open_tcp_ports(address, prober=PROBER)
            for family, address in addresses(name).items()}


def fetch(host, url: str) -> str:
    return host.run("python3 -c %s %s", FETCH, url).stdout.strip()


def assert_closed_both(results: dict[str, dict[int, str]], *ports: int) -> None:
    for family, result in results.items():
        for port in ports:
            assert result[port] != "open", f"port {port} answers from outside over {family}: {results}"


def open_ports(results: dict[str, dict[int, str]]) -> dict[str, list[int]]:
    return {family: [port for port, state in result.items() if state == "open"]
            for family, result in results.items()}


# ---------------------------------------------------------------- state and record


def test_ufw_is_active_with_the_expected_policy(box, name, capsys):
    status = box.check_output("ufw status verbose")
    with capsys.disabled():
        print(f"\n----- {name}: ufw status verbose\n{status}\n-----")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    assert "Logging: on" in status
    assert box.service("ufw").is_enabled


def test_rules_cover_ipv4_and_ipv6(box, name):
    status = box.check_output("ufw status")
    for rule in ("22/tcp LIMIT", "80/tcp ALLOW", "443/tcp ALLOW",
                 "22/tcp (v6) LIMIT", "80/tcp (v6) ALLOW", "443/tcp (v6) ALLOW"):
        assert rule in " ".join(status.split()), status
    assert box.file("/etc/default/ufw").contains("^IPV6=yes$")
    # Both families filter forwarded traffic to containers, even where Docker does not use IPv6.
    for cmd in ("iptables", "ip6tables"):
        chain = box.check_output(f"{cmd} -S DOCKER-USER")
        assert "-docker-deny" in chain and "-user-forward" in chain, chain


def test_after_rules_are_valid(box, name):
    for cmd, path in (("iptables-restore", "/etc/ufw/after.rules"),
                      ("ip6tables-restore", "/etc/ufw/after6.rules")):
        assert box.file(path).contains("DOCKER-USER")
        assert box.run(f"{cmd} --test --noflush {path}").rc == 0


# ---------------------------------------------------------------- from outside


def test_only_ssh_and_web_answer_from_outside(box, name):
    assert open_from_outside(name) == {"IPv4": ALLOWED, "IPv6": ALLOWED}
    # The blocked ports do have listeners on both addresses: the firewall, not a missing
    # service, stops them (a host's connections to its own addresses go over loopback).
    for address in addresses(name).values():
        assert probe(box, address, 8080, 8081) == {8080: "open", 8081: "open"}, address
    assert fetch(box, "http://127.0.0.1:8081/") == "200"


def test_published_container_answers_on_the_host_only(box, name, prober):
    assert_closed_both(probe_both(prober, name, 8080), 8080)
    own_ip = box.check_output("hostname -I").split()[0]
    assert fetch(box, "http://127.0.0.1:8080/") == "200"
    assert fetch(box, f"http://{own_ip}:8080/") == "200"


@pytest.fixture(scope="module")
def allow_list_round_trip():
    """Converge with 8080 in ufw_allow_rules, probe, converge back without it, probe again.
    Only the role's rule tasks run (tags), to keep the scenario fast."""
    prober = testinfra.get_host(f"docker://{PROBER}")
    only_rules = ("--limit", ",".join(HARDENED), "--tags", "ufw_rules,ufw_docker")
    seen = {"allowed": {}, "restored": {}, "status": {}}
    try:
        seen["allow_run"] = testlib.run_playbook(
            "converge.yml", {"ufw_allow_rules": [{"port": 8080}]}, *only_rules)
        for name in HARDENED:
            seen["allowed"][name] = probe_both(prober, name, 8080, 8081)
            seen["status"][name] = " ".join(
                testinfra.get_host(f"docker://{name}").check_output("ufw status").split())
    finally:
        seen["restore_run"] = testlib.run_playbook("converge.yml", None, *only_rules)
    for name in HARDENED:
        seen["restored"][name] = probe_both(prober, name, 8080, 8081)
    return seen


def test_allow_list_opens_a_published_port(name, allow_list_round_trip):
    seen = allow_list_round_trip
    assert seen["allow_run"].returncode == 0, seen["allow_run"].stdout[-3000:]
    assert "route allow 8080/tcp" in seen["allow_run"].stdout
    assert open_ports(seen["allowed"][name]) == {"IPv4": [8080], "IPv6": [8080]}, seen["allowed"][name]
    assert "8080/tcp ALLOW FWD Anywhere" in seen["status"][name]


def test_a_port_dropped_from_the_allow_list_closes_again(box, name, allow_list_round_trip):
    seen = allow_list_round_trip
    assert seen["restore_run"].returncode == 0, seen["restore_run"].stdout[-3000:]
    assert testlib.recap(seen["restore_run"].stdout)[name]["changed"] > 0
    assert_closed_both(seen["restored"][name], 8080, 8081)
    assert "8080" not in box.check_output("ufw status")
    assert "8080" not in box.check_output("iptables -S DOCKER-USER")


@pytest.fixture(scope="module")
def hand_opened():
    """A port opened by hand (`ufw allow 8081/tcp`, where the stray listener is), probed from
    outside, then the role's rule tasks run: the rule nobody configured goes."""
    prober = testinfra.get_host(f"docker://{PROBER}")
    seen = {"opened": {}, "after": {}, "rules": {}}
    for name in HARDENED:
        testinfra.get_host(f"docker://{name}").check_output("ufw allow 8081/tcp")
        seen["opened"][name] = probe_both(prober, name, 8081)
    seen["run"] = testlib.run_playbook("converge.yml", None, "--limit", ",".join(HARDENED), "--tags", "ufw_rules")
    for name in HARDENED:
        seen["after"][name] = probe_both(prober, name, 8081)
        seen["rules"][name] = testinfra.get_host(f"docker://{name}").check_output("ufw show added")
    return seen


def test_a_port_opened_by_hand_is_closed_by_the_next_run(name, hand_opened):
    seen = hand_opened
    assert open_ports(seen["opened"][name]) == {"IPv4": [8081], "IPv6": [8081]}, seen["opened"][name]
    assert seen["run"].returncode == 0, seen["run"].stdout[-3000:]
    assert "ufw allow 8081/tcp" in seen["run"].stdout  # the rule deleted, named in the run
    assert testlib.recap(seen["run"].stdout)[name]["changed"] > 0
    assert_closed_both(seen["after"][name], 8081)
    assert "8081" not in seen["rules"][name]
    assert "ufw limit 22/tcp" in seen["rules"][name]


MOVED = 2200


def listen_sshd_on(box, port: int) -> None:
    """sshd on port only (22 is the image's own), then wait until it listens there."""
    if port == 22:
        box.check_output("rm -f /etc/ssh/sshd_config.d/zz-ufwtest-port.conf")
    else:
        box.check_output(f"echo 'Port {port}' > /etc/ssh/sshd_config.d/zz-ufwtest-port.conf")
    box.check_output("systemctl restart ssh.service")
    wait_listening(box, port)


def wait_listening(box, port: int) -> None:
    box.check_output(f"for i in $(seq 50); do ss -H -l -t -n 'sport = :{port}' | grep -q . "
                     "&& exit 0; sleep 0.2; done; exit 1")


def ssh_rules(box) -> list[str]:
    """`ufw status` lines of the SSH ports (22 and MOVED), whitespace squeezed."""
    return [" ".join(line.split()) for line in box.check_output("ufw status").splitlines()
            if line.split() and line.split()[0].split("/")[0] in ("22", str(MOVED))]


@pytest.fixture(scope="module")
def ssh_port_move():
    """sshd moves from 22 to MOVED the way site.yml does it: the hardening role first opens
    the new port with a plain allow (planted here), this role runs with ufw_ssh_port=MOVED
    while sshd still listens on 22, sshd moves, this role runs again. A listener planted on
    22 afterwards is probed from outside. Then everything goes back to 22."""
    boxes = {name: testinfra.get_host(f"docker://{name}") for name in HARDENED}
    prober = testinfra.get_host(f"docker://{PROBER}")
    only_rules = ("--limit", ",".join(HARDENED), "--tags", "ufw_rules")
    moved = {"ufw_ssh_port": MOVED}
    seen = {"before_move": {}, "after_move": {}, "probe": {}, "back": {}}
    try:
        for box in boxes.values():
            box.check_output(f"ufw allow {MOVED}/tcp")
        seen["first_run"] = testlib.run_playbook("converge.yml", moved, *only_rules)
        for name, box in boxes.items():
            seen["before_move"][name] = ssh_rules(box)
            listen_sshd_on(box, MOVED)
        seen["second_run"] = testlib.run_playbook("converge.yml", moved, *only_rules)
        for name, box in boxes.items():
            seen["after_move"][name] = ssh_rules(box)
            box.check_output("systemd-run --unit=ufwtest-old-ssh-port python3 -m http.server 22")
            wait_listening(box, 22)
            seen["probe"][name] = probe_both(prober, name, 22, MOVED)
    finally:
        for box in boxes.values():
            box.run("systemctl stop ufwtest-old-ssh-port.service")
            listen_sshd_on(box, 22)
        seen["back_run"] = testlib.run_playbook("converge.yml", None, *only_rules)
    for name, box in boxes.items():
        seen["back"][name] = ssh_rules(box)
    return seen


def test_the_new_ssh_port_is_rate_limited_and_the_old_one_kept_while_sshd_listens(name, ssh_port_move):
    seen = ssh_port_move
    assert seen["first_run"].returncode == 0, seen["first_run"].stdout[-3000:]
    rules = seen["before_move"][name]
    # The plain allow the hardening role opened is now a limit; 22 stays: sshd is there.
    assert f"{MOVED}/tcp LIMIT Anywhere" in rules, rules
    assert f"{MOVED}/tcp ALLOW Anywhere" not in rules, rules
    assert "22/tcp LIMIT Anywhere" in rules and "22/tcp (v6) LIMIT Anywhere (v6)" in rules, rules


def test_the_old_ssh_port_closes_once_sshd_left_it(name, ssh_port_move):
    seen = ssh_port_move
    assert seen["second_run"].returncode == 0, seen["second_run"].stdout[-3000:]
    assert testlib.recap(seen["second_run"].stdout)[name]["changed"] > 0
    assert seen["after_move"][name] == [f"{MOVED}/tcp LIMIT Anywhere",
                                        f"{MOVED}/tcp (v6) LIMIT Anywhere (v6)"]
    # From outside: a service planted on the old port does not answer, sshd on the new does.
    results = seen["probe"][name]
    assert open_ports(results) == {"IPv4": [MOVED], "IPv6": [MOVED]}, results


def test_moving_back_restores_the_ssh_rule(name, ssh_port_move):
    seen = ssh_port_move
    assert seen["back_run"].returncode == 0, seen["back_run"].stdout[-3000:]
    assert seen["back"][name] == ["22/tcp LIMIT Anywhere", "22/tcp (v6) LIMIT Anywhere (v6)"]


def assert_container_reaches_prober(box) -> None:
    prober_ip = testlib.container_ip(PROBER)
    outbound = box.run(
        "docker run --rm %s python3 -c %s", IMAGE,
        f"import socket; socket.create_connection(('{prober_ip}', 22), timeout=5); print('ok')")
    assert outbound.stdout.strip() == "ok", outbound.stderr


def test_containers_keep_outbound_traffic_and_talk_to_each_other(box, name):
    assert_container_reaches_prober(box)

    box.run("docker rm -f ufwtest-web; docker network rm ufwtest-net")
    box.check_output("docker network create ufwtest-net")
    try:
        box.check_output("docker run -d --name ufwtest-web --network ufwtest-net %s "
                          "python3 -m http.server 8000", IMAGE)
        between = box.run(
            "docker run --rm --network ufwtest-net %s python3 -c %s",
            IMAGE, "import time, urllib.request as u\n"
                   "for _ in range(20):\n"
                   "    try:\n"
                   "        print(u.urlopen('http://ufwtest-web:8000/', timeout=3).status); break\n"
                   "    except OSError: time.sleep(0.5)\n")
        assert between.stdout.strip() == "200", between.stdout + between.stderr
    finally:
        box.run("docker rm -f ufwtest-web; docker network rm ufwtest-net")


def test_docker_started_after_the_firewall_is_closed_too(box, name):
    """As at boot, or when Docker is installed after this role: UFW loads its rules into an
    empty ruleset (no Docker chains), then Docker starts and publishes ports."""
    box.check_output("systemctl stop docker.service docker.socket")
    for cmd in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            box.run(f"{cmd} -t {table} -F && {cmd} -t {table} -X")
        assert box.check_output(f"{cmd}-save").count("\n-A ") == 0
    assert box.run("iptables -S DOCKER-USER").rc != 0  # no trace of Docker or UFW is left
    box.check_output("systemctl restart ufw")
    chain = box.check_output("iptables -S DOCKER-USER")
    assert "ufw-docker-deny" in chain, "UFW alone must create the DOCKER-USER chain"
    assert "DOCKER" not in box.check_output("iptables -S FORWARD")  # Docker has not run yet

    box.check_output("systemctl start docker")
    box.run("docker rm -f ufwtest-8090")
    try:
        box.check_output("docker run -d --name ufwtest-8090 -p 8090:8000 %s "
                          "python3 -m http.server 8000", IMAGE)
        box.check_output("for i in $(seq 50); do "
                          "python3 -c %s http://127.0.0.1:8090/ | grep -qx 200 && exit 0; "
                          "sleep 0.2; done; exit 1", FETCH)
        assert "-j DOCKER-USER" in box.check_output("iptables -S FORWARD")
        # The planted container came back with Docker (restart policy): closed as well.
        box.check_output("for i in $(seq 50); do "
                          "python3 -c %s http://127.0.0.1:8080/ | grep -qx 200 && exit 0; "
                          "sleep 0.2; done; exit 1", FETCH)
        # Neither published container (8080, 8090) nor the stray listener (8081) answers,
        # nor anything else: every port is scanned. All three do listen on both addresses.
        assert open_from_outside(name) == {"IPv4": ALLOWED, "IPv6": ALLOWED}
        for address in addresses(name).values():
            assert probe(box, address, 8080, 8081, 8090) == {8080: "open", 8081: "open", 8090: "open"}, address
        assert_container_reaches_prober(box)
    finally:
        box.run("docker rm -f ufwtest-8090")


def test_bad_input_fails_before_any_change():
    run = testlib.run_playbook("converge.yml", {"ufw_allow_rules": [{"port": "80a"}]},
                               "--limit", ",".join(HARDENED))
    assert run.returncode != 0
    assert "ufw_allow_rules has a bad entry" in run.stdout
    for name in HARDENED:
        assert testlib.recap(run.stdout)[name]["changed"] == 0


def test_ssh_is_rate_limited_from_outside(box, name, prober):
    # Last test on purpose: it leaves the prober rate-limited on port 22 for 30 s.
    # `ufw limit` refuses a source's 7th new connection within 30 s, on either family.
    for family, address in addresses(name).items():
        results = [probe(prober, address, 22)[22] for _ in range(10)]
        assert results[0] == "open", (family, results)
        assert "open" != results[-1], (family, results)

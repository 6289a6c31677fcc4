"""The demo server survives the failure of its parts, and each fault prints its figures.

The server is the one the demo fixture deployed (conftest.py): site.yml on a Debian 13
server container, Docker inside, the example app behind nginx with a certificate from the
demo's ACME server. Each fault is done to the live server, and what must hold is proven
from outside, at the server's address on the demo network, as visitors and attackers see a
rented server:
  - a reboot through systemd's own shutdown, then a plain start, with no playbook run in
    between: the site answers over HTTPS again, the firewall has the same rules, every
    port but SSH, HTTP and HTTPS stays closed, and at no moment of the boot does a port
    published by Docker accept a connection from outside (the firewall is in place before
    Docker publishes anything); the timers and the services of the hardening are back;
  - a restart of the Docker engine under HTTPS load: the app's containers keep running
    (live-restore) and the site answers again within a bounded gap.
The server is left serving and healthy, as test_demo_operations.py (which runs next) needs it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from demo_env import REPO, demo_cli, docker, say

sys.path.insert(0, str(REPO / "molecule/shared"))
from testlib import open_tcp_ports  # noqa: E402  molecule/shared/testlib.py
import loadgen  # noqa: E402  scripts/loadgen.py (scripts/ is on sys.path through demo_env)

CONTAINER = demo_cli.CONTAINER
NAME = demo_cli.DOMAIN
ROOT_CA = demo_cli.ACME_ROOT
# A boot slower than this fails the test (a first boot of the demo takes seconds).
BOOT_BOUND = 180
# The timers the roles install or enable: certificate renewal (roles/tls/tasks/renewal.yml),
# the backups (roles/backups) and Docker's prune (roles/docker/tasks/prune.yml).
TIMERS = ("certbot.timer", "shipshape-backup.timer", "docker-prune.timer")
SERVICES = ("ssh", "ufw", "fail2ban", "systemd-journald", "docker", "nginx")
APP_PORT = 8000  # the app's container port, published by Docker on 127.0.0.1
# A database published on the server's addresses, as compose.db.published.yaml does on a
# database host; no rule of ufw_allow_rules lists it, so the firewall must keep it closed.
PUBLISHED_PORT = 5432
PUBLISHED = "shipshape-fault-published-db"
# The app's Compose projects: the slot nginx sends the traffic to (example-a on 8000,
# example-b on 8001; the other slot's containers are stopped) and the stateful services.
SLOT_PORTS = {"8000": "example-a", "8001": "example-b"}
STATEFUL_PROJECT = "example-data"
UPSTREAM = "/etc/nginx/conf.d/shipshape-upstream.conf"


def on_server(command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """A root shell command on the server, through `docker exec`: it needs no SSH connection,
    which a reboot breaks."""
    return subprocess.run(["docker", "exec", CONTAINER, "sh", "-c", command], capture_output=True, text=True,
                          timeout=timeout, check=False)


def read(command: str) -> str:
    proc = on_server(command)
    assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def https_status(ip: str, path: str = "/health", timeout: float = 3):
    """The HTTP status of one HTTPS GET to the server as a browser sends it (the site's name
    for SNI and Host, verified against the demo CA), or the error's name."""
    context = ssl.create_default_context(cafile=str(ROOT_CA))
    try:
        with socket.create_connection((ip, 443), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=NAME) as tls:
            conn = http.client.HTTPSConnection(NAME, 443, timeout=timeout)
            conn.sock = tls
            conn.request("GET", path, headers={"Host": NAME, "Connection": "close"})
            response = conn.getresponse()
            response.read()
            return response.status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__


def app_projects() -> tuple:
    """The live slot's Compose project (the one nginx's upstream points at) and the stateful one."""
    port = read(f"sed -n 's/.*server 127\\.0\\.0\\.1:\\([0-9]*\\);.*/\\1/p' {UPSTREAM}").strip()
    assert port in SLOT_PORTS, f"nginx's upstream points at no slot's port: {port!r}"
    return SLOT_PORTS[port], STATEFUL_PROJECT


def app_containers() -> dict:
    """{name: (id, start time)} of the running containers of the app's live slot and of its
    stateful services (the idle slot's containers are stopped, and stay so)."""
    found = {}
    for project in app_projects():
        ids = read(f"docker ps -q --filter label=com.docker.compose.project={project}").split()
        assert ids, f"no running container in the Compose project {project}"
        for line in read("docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}' " + " ".join(ids)).splitlines():
            name, cid, started = line.split()
            found[name.lstrip("/")] = (cid, started)
    return found


def timers() -> dict:
    """{timer unit: the service it starts} of every timer systemd knows."""
    rows = read("systemctl list-timers --all --no-legend --no-pager").splitlines()
    # NEXT and LAST take several words, or "-"; the last two words are the timer and its service.
    return dict(row.split()[-2:] for row in rows if row.strip())


def server_state() -> str | None:
    return demo_cli.container_state(CONTAINER)


def answers_on_the_server(ip: str, port: int) -> bool:
    """True when the server itself connects to its own address at port (its own traffic to a
    published port does not pass the firewall's forward chain)."""
    return on_server(f"python3 -c \"import socket; socket.create_connection(('{ip}', {port}), 2)\"").returncode == 0


def ensure_running() -> None:
    """The server up again, whatever a failed test left (stopped in the middle of a reboot)."""
    if server_state() != "running":
        docker("start", CONTAINER)
    demo_cli.wait_for_systemd(CONTAINER, timeout=180)


@pytest.fixture(scope="module")
def server_ip(demo) -> str:
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return demo_cli.trust_network_address()


@contextmanager
def database_published_everywhere(ip: str):
    """A container publishing PUBLISHED_PORT on every address of the server, restarted by
    Docker at boot (restart policy unless-stopped), like the database of a database host.
    Removed afterwards, with the server running."""
    image = read("docker images --format '{{.Repository}}:{{.Tag}}' example-web").split()[0]
    started = on_server(f"docker run -d --name {PUBLISHED} --init --restart unless-stopped "
                        f"-p 0.0.0.0:{PUBLISHED_PORT}:{PUBLISHED_PORT} --entrypoint python3 {image} "
                        f"-m http.server {PUBLISHED_PORT}")
    try:
        assert started.returncode == 0, started.stderr
        for _ in range(40):
            if answers_on_the_server(ip, PUBLISHED_PORT):
                break
            time.sleep(0.5)
        # Negative control: the service is there and published; only the firewall keeps it from outside.
        assert answers_on_the_server(ip, PUBLISHED_PORT)
        yield
    finally:
        ensure_running()
        removed = on_server(f"docker rm -f {PUBLISHED}")
        assert removed.returncode == 0, removed.stderr


class Prober:
    """From this machine, connections to the server's ports, over and over, each port in
    its own thread with a short timeout: every connection accepted is recorded."""

    def __init__(self, ip: str, ports: tuple, timeout: float = 0.1):
        self.ip, self.ports, self.timeout = ip, ports, timeout
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: dict = {}  # outcome ("accepted", "refused", "timeout" ...): count
        self.accepted: list = []  # (seconds since the start, port)
        self.threads = [threading.Thread(target=self._probe, args=(port,), daemon=True) for port in ports]
        self.started = 0.0

    def _probe(self, port: int) -> None:
        while not self.stopping.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect((self.ip, port))
                outcome = "accepted"
            except ConnectionRefusedError:
                outcome = "refused"
            except TimeoutError:
                outcome = "timeout"
            except OSError as exc:
                outcome = type(exc).__name__
            finally:
                sock.close()
            with self.lock:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
                if outcome == "accepted":
                    self.accepted.append((round(time.monotonic() - self.started, 2), port))
            if outcome != "timeout":
                time.sleep(0.001)  # a refused connection returns at once: leave the CPU some room

    def start(self, started: float) -> "Prober":
        self.started = started
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> int:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)
        return sum(self.outcomes.values())


def test_a_reboot_brings_the_site_back_with_the_firewall_in_place_from_the_first_moment(request, server_ip):
    """`systemctl poweroff` on the server (systemd's own orderly shutdown, as a reboot does),
    then `docker start` and nothing else: no playbook runs. The site answers 200 over HTTPS
    within BOOT_BOUND seconds; from `docker start` until that first 200, ports 8000 (the
    app's, published on 127.0.0.1) and 5432 (a database published on every address) are
    tried from outside without pause and never accept a connection; after the boot ufw has
    exactly the rules it had, only 22, 80 and 443 of all TCP ports answer, the timers are
    back and enabled, the hardening's services run, the database was shut down cleanly
    (no crash recovery) and the deploy user logs in over SSH."""
    ports = (APP_PORT, PUBLISHED_PORT)
    with database_published_everywhere(server_ip):
        assert https_status(server_ip) == 200
        rules_before = read("ufw status verbose")
        timers_before = timers()
        assert set(TIMERS) <= timers_before.keys(), timers_before
        containers_before = app_containers()

        shutdown = time.monotonic()
        try:
            on_server("systemctl poweroff", timeout=60)
        except subprocess.TimeoutExpired:
            pass  # the exec session may go down with the server; the state below decides
        while server_state() == "running" and time.monotonic() - shutdown < 120:
            time.sleep(0.2)
        shutdown_seconds = time.monotonic() - shutdown
        assert server_state() == "exited", f"the server did not stop within 120 s ({server_state()})"

        start = time.monotonic()
        started = docker("start", CONTAINER)
        assert started.returncode == 0, started.stderr
        # The address is the server's on the demo network; Docker may give it another one.
        ip = demo_cli.container_ip()
        prober = Prober(ip, ports).start(start)
        status, statuses = None, []
        try:
            while time.monotonic() - start < BOOT_BOUND:
                status = https_status(ip)
                if not statuses or statuses[-1][1] != status:
                    statuses.append((round(time.monotonic() - start, 1), status))
                if status == 200:
                    break
                time.sleep(0.2)
            first_200 = time.monotonic() - start
        finally:
            probes = prober.stop()
        timeline = ", ".join(f"+{at}s {what}" for at, what in statuses)
        say(request, f"\nreboot: shutdown {shutdown_seconds:.1f} s; first 200 after {first_200:.1f} s from "
                     f"`docker start` ({timeline}); {probes} probes of {'/'.join(map(str, ports))} during boot "
                     f"({', '.join(f'{n} {k}' for k, n in sorted(prober.outcomes.items()))}), "
                     f"{len(prober.accepted)} accepted")
        assert status == 200, f"no 200 within {BOOT_BOUND} s of `docker start`: {timeline}"
        assert prober.accepted == [], f"accepted from outside during the boot (s, port): {prober.accepted[:20]}"
        assert probes > 0

        if ip != server_ip:
            say(request, f"reboot: the server's address changed from {server_ip} to {ip}")
        demo_cli.trust_network_address()
        demo_cli.wait_for_systemd(CONTAINER, timeout=120)
        assert read("systemctl is-system-running || true").strip() == "running", \
            read("systemctl --failed --no-legend --no-pager")

        # The firewall: the same rules, and from outside only SSH, HTTP and HTTPS among all the
        # TCP ports, although the published database runs again. The scan is made from the
        # ACME server's container on the demo network, not from this machine: fail2ban counts
        # the scan's connection to SSH against the address that deploys (TESTBED.md).
        assert read("ufw status verbose") == rules_before
        assert on_server(f"docker inspect -f '{{{{.State.Running}}}}' {PUBLISHED}").stdout.strip() == "true"
        assert answers_on_the_server(ip, PUBLISHED_PORT)
        assert open_tcp_ports(ip, prober=demo_cli.ACME) == [22, 80, 443]

        # The timers are back, enabled and waiting; the services run.
        timers_after = timers()
        assert timers_after.keys() == timers_before.keys(), (timers_before, timers_after)
        for timer in TIMERS:
            assert read(f"systemctl is-enabled {timer}").strip() == "enabled", timer
            assert read(f"systemctl is-active {timer}").strip() == "active", timer
        for service in SERVICES:
            assert on_server(f"systemctl is-active {service}").stdout.strip() == "active", service

        # The app's containers were started again by Docker (their restart policy), and the
        # database had been shut down in order: its start found a clean shutdown.
        containers_after = app_containers()
        assert containers_after.keys() == containers_before.keys()
        db = next(name for name in containers_after if name.startswith("example-data-db"))
        recovery = [line for line in read(f"docker logs {db} 2>&1").splitlines() if "database system was " in line]
        assert recovery and "database system was shut down" in recovery[-1], recovery[-3:]

        # The deploy user logs in over SSH at the server's address, and may use sudo.
        login = subprocess.run(
            ["ssh", "-i", str(demo_cli.KEY), "-o", f"UserKnownHostsFile={demo_cli.KNOWN_HOSTS}",
             "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=15", f"{demo_cli.DEPLOY_USER}@{ip}", "sudo -n true && hostname"],
            capture_output=True, text=True, timeout=60, check=False)
        assert login.returncode == 0 and login.stdout.strip() == "demo", login.stderr
    assert https_status(ip) == 200


def longest_gap(results: list) -> float:
    """The longest time without a good answer: between the ends of two successive successful
    requests (loadgen's results: start offset, ok, status, latency, version)."""
    ends = sorted(offset + latency for offset, ok, _status, latency, _version in results if ok)
    return max((b - a for a, b in zip(ends, ends[1:])), default=float("inf"))


def test_a_docker_engine_restart_keeps_the_app_running(request, server_ip):
    """`systemctl restart docker` on the server while visitors request /health 20 times a
    second: with live-restore on (roles/docker: docker_daemon_live_restore), the app's
    containers keep running (same containers, same start times) and the site answers again
    at once.

    What visitors see meanwhile: nginx reaches the app at 127.0.0.1:8000, a port that Docker's
    userland proxy (docker-proxy, a child of the engine) holds; it stops with the engine and
    comes back with it, so for that moment nginx answers 502 Bad Gateway. The requests keep
    being answered (by nginx, never a refused connection or a TLS error), and the gap without
    a good answer stays under a second or two."""
    before = app_containers()
    load = loadgen.Load(server_ip, NAME, str(ROOT_CA), rate=20, timeout=10, workers=32).start()
    try:
        time.sleep(3)
        restart = time.monotonic()
        restarted = on_server("systemctl restart docker")
        assert restarted.returncode == 0, restarted.stderr
        for _ in range(120):
            if on_server("docker info --format '{{.ServerVersion}}'").returncode == 0:
                break
            time.sleep(0.5)
        restart_seconds = time.monotonic() - restart
        time.sleep(5)
    finally:
        summary = load.stop()
    results = sorted(load.results)
    gap = longest_gap(results)
    failures = [status for _offset, ok, status, _latency, _version in results if not ok]
    say(request, f"\ndocker restart: engine back in {restart_seconds:.1f} s; {summary['requests']} requests sent "
                 f"({summary['rate']}/s), {summary['failed']} failed "
                 f"({', '.join(sorted({str(s) for s in failures})) or 'none'}), longest gap without a 200 "
                 f"{gap:.2f} s; latency p50 {summary['p50_ms']} ms, max {summary['max_ms']} ms")
    assert read("docker info --format '{{.LiveRestoreEnabled}}'").strip() == "true"
    assert app_containers() == before  # not restarted: same ids, same start times
    assert summary["requests"] >= 20 * 8
    # Every failure is nginx's 502 while the engine is away; the last seconds are all good.
    assert all(status == 502 for status in failures), summary["failures"]
    assert gap < 3, f"{gap:.2f} s without a good answer"
    assert all(ok for offset, ok, *_ in results if offset > results[-1][0] - 3), summary["failures"]
    assert https_status(server_ip) == 200

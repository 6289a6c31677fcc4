"""What an operator does with the server once `make demo` has deployed it, as with a
production server, and what a visitor and an attacker see of it.

The demo server is the one the demo fixture started (conftest.py): site.yml on a bare
Debian 13 server container over SSH, with Docker inside, the example app, nginx with a
certificate from a real ACME server (Pebble) and the backups. Here:
  - site.yml again changes nothing;
  - from outside (the server's address on the demo network, as a rented server's public
    address): HTTPS with the ACME server's certificate, and of all 65535 TCP ports only SSH,
    HTTP and HTTPS answer, on IPv4 and on IPv6 (the server's link-local address, from the
    machine's side of the demo network);
  - the post-deploy validation (verify.yml): normal, in check mode, and with one fault at a
    time planted on the live server, which exactly the check for it must report;
  - deploy.yml shipping a newer version into the idle slot while a second deploy is stopped
    by the deploy lock, release retention, rollback.yml (refused when the schema is newer
    than the target release, then forced: the stopped slot starts again), one nginx reload
    per deploy of a new version and none for a redeploy of the live one, a deploy under
    HTTPS load that no visitor notices and during which the worker (app_once_services)
    never runs in both slots, a release that fails its health gate while the live one keeps
    serving, a backup that the summary reports, and production.yml refusing to start when a
    pre-flight check fails;
  - no secret in any of this output, and `down` removes everything.
The playbooks run as an operator runs them (`-i inventories/local` with the vault password),
reaching the server at its address on the demo network. Deploys and rollbacks host by host
behind a balancer are proven in the multihost scenario. The tests run in file order and
build on each other.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import testinfra

from demo_env import DEMO, REPO, demo_cli, docker, say, vault_values

sys.path.insert(0, str(REPO / "molecule/shared"))
from testlib import link_local_address, open_tcp_ports, recap  # noqa: E402  molecule/shared/testlib.py
import loadgen  # noqa: E402  scripts/loadgen.py (scripts/ is on sys.path through demo_env)

SERVER = "demo"  # its name in inventories/local
CONTAINER = demo_cli.CONTAINER
NAME = demo_cli.DOMAIN
KEY, KNOWN_HOSTS, ROOT_CA = demo_cli.KEY, demo_cli.KNOWN_HOSTS, demo_cli.ACME_ROOT
VAULT, VAULT_PASSWORD_FILE = demo_cli.VAULT, demo_cli.VAULT_PASSWORD_FILE
INVENTORY = REPO / "inventories/local"
PLAYBOOKS = REPO / "playbooks"
APP_ROOT = "/srv/example"
# The app's two slots: Compose project example-a on 127.0.0.1:8000, example-b on 8001; nginx
# sends the traffic to one of them, the other's containers are stopped (kept for a rollback).
SLOT_PORTS = {"a": 8000, "b": 8001}
BIN = Path(sys.executable).parent
# The post-deploy validation is proven above; deploys that test something else skip it.
NO_VALIDATION = ("--skip-tags", "verify")
OUTPUTS: list = []  # every playbook's output, searched for the secrets at the end


@pytest.fixture(scope="module")
def server_ip(demo) -> str:
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return demo_cli.trust_network_address()


@pytest.fixture(scope="module")
def server_ipv6(demo) -> str:
    """The server's link-local IPv6 address, scoped to the demo network's bridge on this machine."""
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    network_id = docker("network", "inspect", "-f", "{{.Id}}", demo_cli.NETWORK).stdout.strip()
    return link_local_address(CONTAINER, via=f"br-{network_id[:12]}")


@pytest.fixture(scope="module")
def host(server_ip):
    # One multiplexed connection for all the commands: the firewall rate-limits new SSH
    # connections from one address (ufw limit).
    control_path = "/tmp/shipshape-demo-tests-%C"
    options = (f"-o UserKnownHostsFile={KNOWN_HOSTS} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes "
               f"-o ControlMaster=auto -o ControlPersist=120s -o ControlPath={control_path}")
    yield testinfra.get_host(f"ssh://deploy@{server_ip}", ssh_identity_file=str(KEY), sudo=True,
                             ssh_extra_args=options)
    subprocess.run(["ssh", "-o", f"ControlPath={control_path}", "-O", "exit", f"deploy@{server_ip}"],
                   capture_output=True, check=False)


@pytest.fixture(scope="module")
def versions(server_ip) -> dict:
    """The example app's later versions as tags in the server's repository (`demo.py versions`),
    beside the `main` the demo deployed; {ref: commit}."""
    found = demo_cli.add_versions()
    assert {"main", "v2", "v3"} <= found.keys(), found
    return found


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> Path:
    """A CA that did not sign the site's certificate: the one of Pebble's own HTTPS."""
    path = tmp_path_factory.mktemp("ca") / "other-ca.pem"
    path.write_text(docker("exec", demo_cli.ACME, "cat", "/etc/pebble/cert.pem").stdout)
    assert "BEGIN CERTIFICATE" in path.read_text()
    return path


def run_playbook(playbook: Path, extra: dict | None = None, *args: str, ip: str | None = None,
                 timeout: int = 900, wait: bool = True):
    """ansible-playbook as an operator runs it; with ip, the server is reached at that address."""
    cmd = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASSWORD_FILE),
           str(playbook)]
    extra = dict(extra or {})
    if ip:
        extra.update(ansible_host=ip, ansible_port=22)
    if extra:
        cmd += ["-e", json.dumps(extra)]
    cmd += list(args)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    OUTPUTS.append(proc.stdout)
    return proc


def curl(ip: str, path: str, cafile: Path = ROOT_CA) -> subprocess.CompletedProcess:
    """HTTPS to the server as a browser would, the name resolved to the server's address."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--cacert", str(cafile), "--resolve", f"{NAME}:443:{ip}",
         "-w", "\n%{http_code}", f"https://{NAME}{path}"],
        capture_output=True, text=True, timeout=30, check=False)


def answers(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=3):
            return True
    except OSError:
        return False


def summary(output: str) -> str:
    """The summary the validation printed (the debug task's message), up to the next task."""
    start = output.rfind(f"Post-deploy validation of {SERVER}: ")
    assert start >= 0, output[-3000:]
    ends = [m.start() for m in re.finditer(r"^(TASK|RUNNING HANDLER|PLAY) \[|^PLAY RECAP", output, re.M)
            if m.start() > start]
    return output[start:min(ends, default=len(output))]


# The checks of the post-deploy validation (roles/verify/tasks/*.yml), as its summary names
# them; the HTTPS ones add the site's name or the path they request.
CHECKS = ("health", "certificate", "headers", "admin page", "rate limit", "allowed ports answer",
          "other ports closed", "app logs")
ROW = re.compile(r"\b(PASS|FAIL)  (" + "|".join(map(re.escape, CHECKS)) + r")(?: [^:\n]*)?: ([^\n]*)")


def verdicts(text: str) -> dict:
    """{check: (PASS or FAIL, what it found)}: one row of the summary for each check, no more."""
    rows = ROW.findall(text)
    found = {check: (verdict, detail) for verdict, check, detail in rows}
    assert len(rows) == len(found) and set(found) == set(CHECKS), text
    return found


def last_backup(host) -> str:
    """What the summary must say about the last backup (site.yml may have made one)."""
    status = host.file("/var/backups/example/status.json")
    if not status.exists:
        return "no backup yet"
    return json.loads(status.content_string)["last_success"]


def ledger(host) -> list:
    return [json.loads(line) for line in host.file(f"{APP_ROOT}/releases.jsonl").content_string.splitlines() if line]


def current_release(host) -> dict:
    return json.loads(host.file(f"{APP_ROOT}/current/release.json").content_string)


def served_version(ip: str) -> str:
    body, status = curl(ip, "/health").stdout.rsplit("\n", 1)
    assert status == "200", body
    return json.loads(body)["version"]


def upstream_port(host) -> int:
    text = host.file("/etc/nginx/conf.d/shipshape-upstream.conf").content_string
    return int(re.search(r"server 127\.0\.0\.1:(\d+);", text).group(1))


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def live_slot(host) -> str:
    """The slot nginx sends the traffic to; `current` and that slot's link name the same release."""
    port = upstream_port(host)
    slots = [slot for slot, slot_port in SLOT_PORTS.items() if slot_port == port]
    assert slots, f"nginx's upstream points at 127.0.0.1:{port}, the port of no slot"
    current = host.run(f"readlink -f {APP_ROOT}/current").stdout.strip()
    linked = host.run(f"readlink -f {APP_ROOT}/slots/{slots[0]}").stdout.strip()
    assert current and current == linked, (current, linked)
    return slots[0]


def slot_containers(host, slot: str) -> dict:
    """{name: (id, state)} of every container of the slot's Compose project, stopped or not."""
    listed = host.run(f"docker ps -a --filter label=com.docker.compose.project=example-{slot} "
                      "--format '{{.Names}} {{.ID}} {{.State}}'")
    assert listed.rc == 0, listed.stderr
    return {name: (cid, state) for name, cid, state in (line.split() for line in listed.stdout.splitlines() if line)}


def serves_from(host, slot: str) -> None:
    """The slot serves (nginx points at its port, its web and worker run) and the other
    slot's containers are stopped, not removed."""
    assert live_slot(host) == slot
    running = {name for name, (_cid, state) in slot_containers(host, slot).items() if state == "running"}
    assert {f"example-{slot}-web-1", f"example-{slot}-worker-1"} <= running, running
    idle = slot_containers(host, other(slot))
    assert idle and all(state == "exited" for _cid, state in idle.values()), idle


def hooks(entry: dict) -> dict:
    """{hook name: its result} of a ledger line."""
    return {hook["name"]: hook["result"] for hook in entry["hooks"]}


def running_workers(host) -> list:
    """The Compose projects of the running worker containers, one per container."""
    listed = host.run("docker ps --filter label=com.docker.compose.service=worker --filter status=running "
                      "--format '{{.Label \"com.docker.compose.project\"}}'")
    assert listed.rc == 0, listed.stderr
    return listed.stdout.split()


def nginx_reloads(host) -> int:
    """How many times nginx was reloaded since the server's journal began (systemd logs
    "Reloading nginx.service ..." and, when done, "Reloaded nginx.service ...")."""
    journal = host.run("journalctl -u nginx --no-pager -o cat").stdout.splitlines()
    return sum(1 for line in journal if line.startswith("Reloaded "))


def settled_reloads(host) -> int:
    """nginx_reloads once the journal has caught up (the same count twice, a second apart)."""
    count = nginx_reloads(host)
    for _ in range(10):
        time.sleep(1)
        again = nginx_reloads(host)
        if again == count:
            return count
        count = again
    return count


def run_verify(ip: str, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    # From the controller to the server's address on the demo network, where HTTPS is on 443
    # (demo.py publishes it on 127.0.0.1:8443, where the ports cannot be probed).
    return run_playbook(PLAYBOOKS / "verify.yml", {"verify_https_port": 443, **(extra or {})}, *args, ip=ip,
                        timeout=600)


# ------------------------------------------------------------------ site.yml again

def test_site_yml_again_changes_nothing(demo):
    assert demo.returncode == 0, demo.stdout[-3000:]
    run = run_playbook(REPO / "site.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    counts = recap(run.stdout)[SERVER]
    assert counts["changed"] == 0 and counts["failed"] == 0, run.stdout[-6000:]


# ------------------------------------------------------------------ drift

def drift_report() -> subprocess.CompletedProcess:
    """scripts/drift.py as an operator runs it: site.yml in check mode, summed up."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts/drift.py"), "-i", str(INVENTORY),
                           "--vault-password-file", str(VAULT_PASSWORD_FILE)],
                          cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    OUTPUTS.append(proc.stdout + proc.stderr)
    return proc


def drift_rows(output: str) -> dict:
    """{task: [its lines]} of the report's DRIFT rows."""
    rows, current = {}, None
    for line in output.splitlines():
        if line.startswith("DRIFT  "):
            current = line.split("  ", 2)[2]
            rows[current] = []
        elif line.startswith("       ") and current:
            rows[current].append(line.strip())
    return rows


# What an operator or an intruder changes by hand on a converged server, and the task of
# site.yml that finds it (in a dry run) and puts it back.
DRIFT = {
    "hardening : Configure the SSH server (validated before it goes live)":
        "sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' /etc/ssh/sshd_config",
    "hardening : Write the kernel and network settings":
        "sed -i 's/^net.ipv4.conf.all.accept_redirects = 0/net.ipv4.conf.all.accept_redirects = 1/' "
        "/etc/sysctl.d/90-hardening.conf",
    "ufw : Delete the rules nobody configured": "ufw allow 8080/tcp",
    "app : Keep the live release running in its slot":
        "docker stop -t 2 $(docker ps -q --filter label=com.docker.compose.service=web)",
    "app : Write the release's env file (the app's keys) and Compose variables":
        f"echo EDITED_BY_HAND=1 >> {APP_ROOT}/current/.env",
}


@pytest.fixture(scope="module")
def drift(host):
    """The report after each drift of DRIFT was planted, site.yml's run after it, and the
    report after that run."""
    for plant in DRIFT.values():
        host.check_output(plant)
    seen = {"planted": drift_report()}
    seen["site"] = run_playbook(REPO / "site.yml")
    seen["after"] = drift_report()
    return seen


def test_the_drift_report_names_each_drift_and_exits_non_zero(drift, host):
    report = drift["planted"]
    assert report.returncode == 1, report.stdout[-4000:] + report.stderr[-2000:]
    rows = drift_rows(report.stdout)
    # Each planted drift, and nothing else.
    assert set(rows) == set(DRIFT), report.stdout
    assert "-PasswordAuthentication yes" in rows[next(iter(DRIFT))]
    assert "+PasswordAuthentication no" in rows[next(iter(DRIFT))]
    assert "+net.ipv4.conf.all.accept_redirects = 0" in rows["hardening : Write the kernel and network settings"]
    # The env file holds secrets: the report names it, and shows none of its lines.
    env_rows = rows["app : Write the release's env file (the app's keys) and Compose variables"]
    assert [line for line in env_rows if line.startswith("differs: ")] == [
        f"differs: {host.check_output(f'readlink -f {APP_ROOT}/current')}/.env"], env_rows
    assert any(line.endswith(": Starting") for line in rows["app : Keep the live release running in its slot"])
    assert "ufw allow 8080/tcp" in " ".join(rows["ufw : Delete the rules nobody configured"])
    for lines in rows.values():
        assert any(line.startswith("fix: ansible-playbook site.yml -i ") for line in lines), lines
    assert f"drift: {len(DRIFT)} setting(s) drifted on demo" in report.stdout
    for value in vault_values():
        assert value not in report.stdout + report.stderr


def test_site_yml_puts_the_drift_back_and_the_report_then_exits_zero(drift, host):
    site = drift["site"]
    assert site.returncode == 0, site.stdout[-4000:]
    assert recap(site.stdout)[SERVER]["changed"] > 0
    after = drift["after"]
    assert after.returncode == 0, after.stdout[-4000:]
    assert "drift: nothing drifted" in after.stdout
    assert "EDITED_BY_HAND" not in host.check_output(f"cat {APP_ROOT}/current/.env")
    assert host.run("grep -qx 'PasswordAuthentication no' /etc/ssh/sshd_config").rc == 0
    assert "8080" not in host.check_output("ufw show added")


# ------------------------------------------------------------------ from outside

def test_health_answers_over_https_with_a_certificate_from_the_acme_server(host, server_ip, versions):
    proc = curl(server_ip, "/health")
    assert proc.returncode == 0, proc.stderr
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "200"
    health = json.loads(body)
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["version"] == versions["main"]


def test_the_certificate_does_not_verify_against_another_ca(server_ip, other_ca):
    # Negative control: the same request fails when the trusted CA did not sign the chain.
    proc = curl(server_ip, "/health", other_ca)
    assert proc.returncode == 60, (proc.returncode, proc.stderr)


FORGOTTEN_PORT = 6379  # a cache an operator started by hand and forgot


def start_forgotten_service(host) -> None:
    """A service listening on every address of the server at FORGOTTEN_PORT (started once)."""
    if host.run("systemctl is-active --quiet forgotten-cache").rc != 0:
        # `--bind ::` takes IPv4 and IPv6 alike.
        started = host.run(f"systemd-run --unit forgotten-cache python3 -m http.server --bind :: {FORGOTTEN_PORT}")
        assert started.rc == 0, started.stderr
    for _ in range(30):
        listening = host.run(f"ss -H -l -t -n 'sport = :{FORGOTTEN_PORT}'").stdout
        if listening.strip():
            break
        time.sleep(0.5)
    assert f"*:{FORGOTTEN_PORT}" in listening or f"[::]:{FORGOTTEN_PORT}" in listening, listening


def test_a_forgotten_service_listens_on_every_address(host):
    # Bad state an operator may leave behind: the firewall is what must keep it unreachable.
    start_forgotten_service(host)
    assert host.run("python3 -c %s",
                    f"import socket; socket.create_connection(('127.0.0.1', {FORGOTTEN_PORT}), 3)").rc == 0


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_only_ssh_http_and_https_answer_from_outside(family, host, server_ip, server_ipv6):
    """Every TCP port, 1 to 65535, is tried from this machine: only SSH, HTTP and HTTPS accept
    a connection. Among the closed ones: the app's own port 8000 (published by Docker on
    127.0.0.1), the database, Docker's API, and the forgotten service listening on every
    address (test above)."""
    address = server_ip if family == "IPv4" else server_ipv6
    assert open_tcp_ports(address) == [22, 80, 443]
    # The scan's one connection to 22 that never logs in is what fail2ban counts (its
    # aggressive sshd jail): it stays below the limit, so this machine, which deploys over
    # SSH from the same address, is not banned.
    banned = host.run("fail2ban-client get sshd banip").stdout.split()
    assert banned == [], banned


def test_root_and_password_logins_are_off(host):
    settings = host.run("sshd -T").stdout.splitlines()
    assert "permitrootlogin no" in settings and "passwordauthentication no" in settings


def test_the_app_is_published_on_loopback_only(host):
    # One web container runs: the live slot's, on its port on 127.0.0.1 only.
    slot = live_slot(host)
    ports = host.run("docker ps --format '{{.Names}} {{.Ports}}'").stdout
    web = [line for line in ports.splitlines() if "web" in line]
    assert web == [f"example-{slot}-web-1 127.0.0.1:{SLOT_PORTS[slot]}->8000/tcp"], ports
    assert "0.0.0.0:" not in ports


# ------------------------------------------------------------------ the validation play

def test_validation_passes_changes_nothing_and_prints_the_summary(host, server_ip, versions):
    run = run_verify(server_ip)
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run.stdout)[SERVER]["changed"] == 0
    text = summary(run.stdout)
    assert re.search(r"all \d+ checks passed", text), text
    assert f"URL:          https://{NAME}/" in text
    assert f"commit:       {versions['main']}" in text
    assert "issued by Pebble Intermediate CA" in text
    assert "open ports:   22, 80, 443" in text
    assert f"last backup:  {last_backup(host)}" in text
    assert {check: verdict for check, (verdict, _) in verdicts(text).items()} == dict.fromkeys(CHECKS, "PASS"), text


def test_validation_in_check_mode(server_ip):
    run = run_verify(server_ip, "--check")
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run.stdout)[SERVER]["changed"] == 0
    assert re.search(r"all \d+ checks passed", summary(run.stdout))


# One fault at a time on the live server: the validation must fail on exactly the check made
# for that fault, with its reason, and pass every other check. A check that failed along with
# others (as all the HTTPS checks do when TLS breaks) would prove nothing on its own.
HEADERS_SNIPPET = "/etc/nginx/snippets/shipshape-headers.conf"  # roles/tls/templates/security-headers.conf.j2
SITE_CONFIG = f"/etc/nginx/conf.d/shipshape-site-{NAME}.conf"  # roles/tls/templates/site.conf.j2
PLANTED_LOG_LINE = "ERROR planted by the test: a fault the log check must report"


def reload_nginx(host) -> None:
    reload = host.run("nginx -t && systemctl reload nginx")
    assert reload.rc == 0, reload.stderr


def health_headers(ip: str) -> str:
    proc = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "15", "--cacert", str(ROOT_CA),
                           "--resolve", f"{NAME}:443:{ip}", f"https://{NAME}/health"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.lower()


def wait_for(condition, what: str, tries: int = 40) -> None:
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting until {what}")


@contextmanager
def nginx_config_edited(host, path: str, sed_script: str):
    """nginx serving with `path` edited by sed; afterwards the file is put back as it was,
    byte for byte with its owner, mode and times, and nginx reloaded."""
    before = host.file(path).sha256sum
    backup = f"/var/tmp/{Path(path).name}.before-the-fault"
    assert host.run(f"cp -p {path} {backup}").rc == 0
    try:
        assert host.run(f"sed -i {shlex.quote(sed_script)} {path}").rc == 0
        assert host.file(path).sha256sum != before, f"{sed_script} changed nothing in {path}"
        reload_nginx(host)
        yield
    finally:
        restored = host.run(f"cp -p {backup} {path} && rm {backup}")
        reload_nginx(host)
    assert restored.rc == 0, restored.stderr
    assert host.file(path).sha256sum == before


@contextmanager
def header_removed(host, ip: str, _other_ca: Path):
    # The app sets no security header on /health (its health middleware answers first):
    # nginx's snippet is where they all come from.
    with nginx_config_edited(host, HEADERS_SNIPPET, "/add_header X-Frame-Options/d"):
        wait_for(lambda: "x-frame-options" not in health_headers(ip), "nginx serves without X-Frame-Options")
        assert "strict-transport-security" in health_headers(ip)
        yield {}
    wait_for(lambda: "x-frame-options" in health_headers(ip), "nginx serves X-Frame-Options again")


@contextmanager
def rate_limit_off(host, ip: str, _other_ca: Path):
    # The limit_req lines of the admin and login locations; the zone itself stays defined.
    with nginx_config_edited(host, SITE_CONFIG, "/limit_req zone=shipshape_limited/d"):
        assert host.run(f"grep -c limit_req {SITE_CONFIG}").stdout.strip() == "0"
        yield {}


@contextmanager
def port_allowed(host, ip: str, _other_ca: Path):
    start_forgotten_service(host)
    rules = host.run("ufw status verbose").stdout
    assert not answers(ip, FORGOTTEN_PORT)
    opened = host.run(f"ufw allow {FORGOTTEN_PORT}/tcp")
    try:
        assert opened.rc == 0, opened.stderr
        assert answers(ip, FORGOTTEN_PORT)
        yield {}
    finally:
        closed = host.run(f"ufw delete allow {FORGOTTEN_PORT}/tcp")
    assert closed.rc == 0, closed.stderr
    assert host.run("ufw status verbose").stdout == rules
    assert not answers(ip, FORGOTTEN_PORT)


@contextmanager
def wrong_ca_bundle(host, ip: str, other_ca: Path):
    # The fault is on the controller's side: the CA bundle the checks trust did not sign the
    # site's certificate, as when a server was given a certificate from another CA.
    yield {"verify_ca_bundle": str(other_ca)}


def app_logs(host, since: str) -> str:
    logs = host.run(f"docker compose --project-name example-{live_slot(host)} logs --no-color --since {since}")
    assert logs.rc == 0, logs.stderr
    return logs.stdout


@contextmanager
def error_in_app_logs(host, ip: str, _other_ca: Path):
    # A line on the standard output of the app's web process (PID 1 of its container), where
    # the app's own errors go. A printed line cannot be taken back: it stays in the check's
    # window (verify_logs_since, 15 minutes), which is why this fault is planted last; the
    # next deploy replaces the container. The run must find this line and no other.
    web = host.run(f"docker ps -q --filter label=com.docker.compose.project=example-{live_slot(host)} "
                   "--filter label=com.docker.compose.service=web").stdout.split()
    assert len(web) == 1, web
    assert PLANTED_LOG_LINE not in app_logs(host, "15m")
    printed = host.run(f"docker exec {web[0]} sh -c {shlex.quote(f'echo {PLANTED_LOG_LINE} > /proc/1/fd/1')}")
    assert printed.rc == 0, printed.stderr
    wait_for(lambda: PLANTED_LOG_LINE in app_logs(host, "1m"), "the line is in the app's logs")
    yield {}


# fault: (how it is planted, {check that must fail: what it must say}, other lines the summary
# must show); in the order they run.
FAULTS = {
    "security-header-removed": (header_removed, {"headers": "missing: x-frame-options"}, ()),
    "rate-limit-off": (rate_limit_off, {
        "rate limit": "15 requests in a row and none refused with 429 or 503 (statuses: 200)"}, ()),
    "port-opened-to-a-forgotten-service": (port_allowed, {
        "other ports closed": f"open but not allowed: {FORGOTTEN_PORT}"},
        (f"open ports:   22, 80, 443, {FORGOTTEN_PORT}",)),
    # Every HTTPS request fails once the certificate does not verify: the health, headers,
    # admin page and rate limit checks cannot be made either, and fail with it. The ports and
    # the logs are checked without HTTPS and pass.
    "ca-bundle-that-did-not-sign-the-certificate": (wrong_ca_bundle, {
        "certificate": "not verified",
        "health": "the certificate did not verify",
        "headers": "no answer",
        "admin page": "the certificate did not verify",
        "rate limit": "the certificate did not verify"}, ("certificate:  not verified",)),
    # One line found, the planted one: nothing else in the app's output looks like an error.
    "error-line-in-the-app-logs": (error_in_app_logs, {"app logs": "1 lines of the last 15m match"},
                                   (PLANTED_LOG_LINE,)),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_validation_fails_exactly_the_check_for_a_planted_fault(fault, host, server_ip, other_ca):
    """With this one fault on the server, verify.yml fails, changes nothing, and its summary
    says FAIL, with the reason, for exactly the checks named in FAULTS, and PASS for all the
    others. The fault is removed before the next one is planted: each fixture proves the
    server back as it was (same files, same firewall rules), and the next run, which must
    pass that check again, proves it from outside."""
    plant, failing, shown = FAULTS[fault]
    with plant(host, server_ip, other_ca) as extra:
        run = run_verify(server_ip, extra=extra)
    assert run.returncode != 0, run.stdout[-4000:]
    assert recap(run.stdout)[SERVER]["changed"] == 0
    text = summary(run.stdout)
    found = verdicts(text)
    assert {check for check, (verdict, _) in found.items() if verdict == "FAIL"} == set(failing), text
    for check, reason in failing.items():
        assert reason in found[check][1], text
    for line in shown:
        assert line in text, text
    assert f"{len(failing)} of {len(CHECKS)} checks FAILED" in text
    assert f"{len(failing)} post-deploy check(s) failed on {SERVER}" in run.stdout


# ------------------------------------------------------------------ the other playbooks

def test_a_second_deploy_at_the_same_time_is_stopped_by_the_lock(host, server_ip, versions):
    # A lock left by a deploy whose ansible-playbook is gone (same controller, dead pid):
    # the first deploy removes it and takes the lock.
    slot = live_slot(host)  # main, deployed by the demo
    lines = len(ledger(host))
    previous = current_release(host)
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = {"deployer": "ops@" + socket.gethostname(), "controller": socket.gethostname(), "pid": gone.pid,
             "started": "2026-01-01T00:00:00Z", "epoch": int(time.time()), "version": "main"}
    assert host.run(f"printf '%s\\n' {shlex.quote(json.dumps(stale))} > {APP_ROOT}/deploy.lock").rc == 0
    # v2 named by its commit: a version may be a branch (the demo's main), a tag (v3 below)
    # or a commit.
    first = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": versions["v2"]}, *NO_VALIDATION,
                         ip=server_ip, wait=False)
    held = {}
    try:
        for _ in range(240):
            # One read: between a test for the file and a read of it, the first deploy may
            # remove the stale lock, and its own may be half written.
            read = host.run(f"cat -- {APP_ROOT}/deploy.lock")
            try:
                held = json.loads(read.stdout) if read.rc == 0 and read.stdout.strip() else {}
            except ValueError:
                held = {}
            if int(held.get("pid", 0)) == first.pid:
                break
            time.sleep(0.5)
        # The lock names the first deploy's own ansible-playbook process (how a lock whose
        # deploy is gone is recognised).
        assert int(held.get("pid", 0)) == first.pid and held["controller"] == socket.gethostname(), held
        second = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": "main", "app_lock_wait": 0},
                              *NO_VALIDATION, ip=server_ip, timeout=600)
    finally:
        out, _ = first.communicate(timeout=900)
        OUTPUTS.append(out)
    assert first.returncode == 0, out[-4000:]
    assert "Removed a stale deploy lock" in out
    assert second.returncode != 0
    assert f"Another deploy holds the deploy lock {APP_ROOT}/deploy.lock" in second.stdout
    assert f"{held['deployer']} from {held['controller']} (ansible-playbook pid {held['pid']})" in second.stdout
    assert f"deploying version '{versions['v2']}'" in " ".join(second.stdout.split())
    assert "(app_lock_wait)" in second.stdout
    # The blocked deploy changed nothing: it stopped before fetching the code, and left no
    # line in the ledger; what serves is the first deploy's release (v2), not main.
    assert "TASK [app : Fetch the repository into the local mirror]" not in second.stdout
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists
    # The first deploy: only the app stage ran (the validation was skipped here), and v2
    # started in the idle slot and took the traffic once healthy; the slot that served main
    # stopped, its containers kept for a rollback.
    assert "TASK [hardening" not in out and "TASK [tls" not in out
    assert "TASK [app : Start the release in the slot and wait until its containers are healthy]" in out
    assert served_version(server_ip) == versions["v2"]
    serves_from(host, other(slot))
    release = current_release(host)
    assert release["commit"] == versions["v2"] and release["image"].endswith(f":{versions['v2']}")
    assert release["id"].endswith(f"-{versions['v2'][:12]}") and release["id"] != previous["id"]
    entries = ledger(host)
    assert len(entries) == lines + 1, entries[lines:]
    last = entries[-1]
    assert (last["kind"], last["result"], last["commit"], last["release"], last["previous"], last["slot"]) == \
        ("deploy", "success", versions["v2"], release["id"], previous["id"], other(slot))
    # v2 brings no migration: the migrate hook found nothing to do; the admin user exists.
    assert hooks(last) == {"migrate": "skipped (nothing to do)", "create the admin user": "ok"}, last["hooks"]
    assert last["deployed_by"] and last["image_id"].startswith("sha256:")


class WorkerWatch:
    """`docker ps` of the running worker containers on the server, every 0.2 s in a thread
    (through `docker exec`, beside the SSH connection the playbook uses): each sample is the
    list of the Compose projects that run a worker at that moment."""

    COMMAND = ["docker", "exec", CONTAINER, "docker", "ps", "--filter", "label=com.docker.compose.service=worker",
               "--filter", "status=running", "--format", '{{.Label "com.docker.compose.project"}}']

    def __init__(self, every: float = 0.2):
        self.every = every
        self.samples: list = []  # (seconds since the start, [project, ...])
        self.errors: list = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.started = 0.0

    def _watch(self) -> None:
        while not self.stopping.is_set():
            at = time.monotonic() - self.started
            try:
                proc = subprocess.run(self.COMMAND, capture_output=True, text=True, timeout=30, check=False)
            except subprocess.TimeoutExpired:
                self.errors.append(f"+{at:.1f}s timed out")
                continue
            if proc.returncode == 0:
                self.samples.append((round(at, 1), proc.stdout.split()))
            else:
                self.errors.append(f"+{at:.1f}s {proc.stderr.strip()}")
            self.stopping.wait(self.every)

    def start(self) -> "WorkerWatch":
        self.started = time.monotonic()
        self.thread.start()
        return self

    def stop(self) -> list:
        self.stopping.set()
        self.thread.join(timeout=60)
        return self.samples

    def check(self, before: str, after: str) -> None:
        """At most one worker at every sample, the first in project BEFORE, the last in AFTER."""
        assert not self.errors, self.errors[:10]
        assert len(self.samples) >= 20, self.samples
        twice = [sample for sample in self.samples if len(sample[1]) > 1]
        assert twice == [], f"the worker ran more than once (s, projects): {twice[:10]}"
        assert self.samples[0][1] == [before], self.samples[:5]
        assert self.samples[-1][1] == [after], self.samples[-5:]

    def timeline(self) -> str:
        """When the running workers changed: '+0.0s example-a, +41.2s -, +43.0s example-b'."""
        changes, last = [], None
        for at, projects in self.samples:
            if projects != last:
                changes.append(f"+{at}s {','.join(projects) or '-'}")
                last = projects
        return ", ".join(changes)


def test_rollback_refuses_a_release_older_than_the_schema_unless_forced(request, host, server_ip, versions):
    main, v2, v3 = versions["main"], versions["v2"], versions["v3"]
    served_before = current_release(host)  # v2, from the deploy above
    assert served_before["commit"] == v2
    v2_slot = live_slot(host)
    # v3 adds a column. Only two releases are kept: the two that served last (v2 and now
    # v3, one in each slot); the first release (main) goes, with its image.
    run = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": "v3", "app_keep_releases": 2},
                       *NO_VALIDATION, ip=server_ip)
    assert run.returncode == 0, run.stdout[-4000:]
    assert served_version(server_ip) == v3
    assert hooks(ledger(host)[-1])["migrate"] == "ok", ledger(host)[-1]["hooks"]
    serves_from(host, other(v2_slot))
    releases = host.run(f"ls {APP_ROOT}/releases").stdout.split()
    assert releases == sorted([served_before["id"], current_release(host)["id"]])
    assert host.run(f"docker image inspect example-web:{main}").rc != 0
    assert host.run(f"docker image inspect example-web:{v2}").rc == 0
    kept = {name: cid for name, (cid, _state) in slot_containers(host, v2_slot).items()}  # v2's, stopped
    # The release that served before v3 (v2) does not know the new migration: refused,
    # nothing changes.
    refused = run_playbook(PLAYBOOKS / "rollback.yml", ip=server_ip, timeout=600)
    assert refused.returncode != 0
    assert f"Release {served_before['id']} does not know 1 migration(s) the database has applied: " \
           "notes.0002_note_pinned" in refused.stdout
    assert "app_rollback_force=true" in refused.stdout
    assert served_version(server_ip) == v3 and current_release(host)["commit"] == v3
    assert "TASK [app : Start the stopped containers of the slot]" not in refused.stdout
    serves_from(host, other(v2_slot))
    assert {name: cid for name, (cid, _state) in slot_containers(host, v2_slot).items()} == kept
    assert (ledger(host)[-1]["kind"], ledger(host)[-1]["result"]) == ("rollback", "failed")
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists
    # Forced: back to v2's release without a rebuild: the slot that holds it starts its
    # stopped containers again, and nginx sends the traffic there.
    watch = WorkerWatch().start()
    try:
        forced = run_playbook(PLAYBOOKS / "rollback.yml", {"app_rollback_force": True}, ip=server_ip,
                              timeout=600)
    finally:
        watch.stop()
    say(request, f"\nrollback: running workers {watch.timeline()} ({len(watch.samples)} samples)")
    assert forced.returncode == 0, forced.stdout[-4000:]
    out = forced.stdout
    assert "WARNING: rolling back" in out
    started = out.split("TASK [app : Start the stopped containers of the slot]", 1)[1].split("TASK [", 1)[0]
    assert f"changed: [{SERVER}]" in started, started
    assert "TASK [app : Build the app image from the release's code]" not in out
    assert served_version(server_ip) == v2
    release = current_release(host)
    assert release["commit"] == v2 and release["id"] == served_before["id"]
    last = ledger(host)[-1]
    assert (last["kind"], last["result"], last["commit"], last["release"], last["hooks"]) == \
        ("rollback", "success", v2, served_before["id"], [])
    serves_from(host, v2_slot)
    # The very containers v2 ran in, started again (not recreated).
    assert {name: cid for name, (cid, _state) in slot_containers(host, v2_slot).items()} == kept
    # The worker (app_once_services) never ran in both slots meanwhile.
    watch.check(f"example-{other(v2_slot)}", f"example-{v2_slot}")


def test_nginx_is_reloaded_once_per_deploy_of_a_new_version_and_not_for_a_redeploy(host, server_ip, versions):
    """The switch to a new release is one graceful reload of nginx (systemd's journal counts
    them); a redeploy of the version that serves changes nothing and reloads nothing."""
    v3 = versions["v3"]
    assert current_release(host)["commit"] != v3  # v2, after the rollback above
    slot = live_slot(host)
    before = settled_reloads(host)
    run = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": "v3"}, *NO_VALIDATION, ip=server_ip)
    assert run.returncode == 0, run.stdout[-4000:]
    after = settled_reloads(host)
    assert served_version(server_ip) == v3
    serves_from(host, other(slot))
    assert after - before == 1, f"nginx was reloaded {after - before} times by the deploy of a new version"
    lines = len(ledger(host))
    again = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": "v3"}, *NO_VALIDATION, ip=server_ip)
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again.stdout)[SERVER]["changed"] == 0, again.stdout[-6000:]
    assert settled_reloads(host) == after, "nginx was reloaded by a redeploy of the version that serves"
    assert len(ledger(host)) == lines
    assert served_version(server_ip) == v3
    serves_from(host, other(slot))


def test_a_deploy_under_load_fails_no_request_and_the_worker_never_runs_twice(request, host, server_ip, versions):
    """deploy.yml of a new version while visitors request /health over HTTPS 10 times a
    second: no request fails, the new version answers at the end; meanwhile `docker ps` on
    the server, every 0.2 s, never shows the worker (app_once_services) running twice; at the
    end exactly one worker runs, in the live slot."""
    v2 = versions["v2"]
    assert current_release(host)["commit"] != v2  # v3, from the test above
    slot = live_slot(host)
    assert running_workers(host) == [f"example-{slot}"]
    load = loadgen.Load(server_ip, NAME, str(ROOT_CA), rate=10, timeout=10, workers=32).start()
    watch = WorkerWatch().start()
    try:
        time.sleep(2)
        run = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": "v2"}, *NO_VALIDATION, ip=server_ip)
        time.sleep(2)
    finally:
        watch.stop()
        summary = load.stop()
    say(request, f"\ndeploy under load: {loadgen.describe(summary)}; running workers {watch.timeline()} "
                 f"({len(watch.samples)} samples)")
    assert run.returncode == 0, run.stdout[-4000:]
    watch.check(f"example-{slot}", f"example-{other(slot)}")
    assert running_workers(host) == [f"example-{other(slot)}"]
    serves_from(host, other(slot))
    assert served_version(server_ip) == v2
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] >= 10 * 10 and summary["versions"][-1] == v2, summary


def test_a_release_that_fails_its_health_gate_leaves_the_live_one_serving(host, server_ip, versions):
    """`unhealthy` (v2 whose /health answers 503) starts in the idle slot and fails the health
    gate: the deploy fails before the switch; the live release never stopped serving, nginx
    was not reloaded, the failed release is gone and the ledger says why."""
    served = current_release(host)
    slot = live_slot(host)
    reloads = settled_reloads(host)
    run = run_playbook(PLAYBOOKS / "deploy.yml", {"app_version": "unhealthy"}, *NO_VALIDATION, ip=server_ip)
    assert run.returncode != 0
    assert f"failed its health gate in slot {other(slot)}" in " ".join(run.stdout.split())
    assert f"the release {served['id']} serves" in " ".join(run.stdout.split())
    assert current_release(host) == served and live_slot(host) == slot
    assert served_version(server_ip) == served["commit"]
    assert settled_reloads(host) == reloads
    assert running_workers(host) == [f"example-{slot}"]
    # The failed release's containers and directory are gone; the live slot runs as before.
    assert not any(state == "running" for _cid, state in slot_containers(host, other(slot)).values())
    assert versions["unhealthy"][:12] not in host.run(f"ls {APP_ROOT}/releases").stdout
    last = ledger(host)[-1]
    assert (last["kind"], last["result"], last["commit"], last["release"]) == \
        ("deploy", "failed", versions["unhealthy"], "")
    assert "health gate" in last["failure"], last
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists


def test_the_summary_reports_the_last_backup(host, server_ip):
    before = last_backup(host)
    backup = host.run("systemctl start shipshape-backup.service")
    assert backup.rc == 0, backup.stdout + backup.stderr
    after = last_backup(host)
    assert after not in (before, "no backup yet")
    run = run_verify(server_ip, "--tags", "verify_summary")
    assert run.returncode == 0, run.stdout[-4000:]
    assert f"last backup:  {after}" in summary(run.stdout)


def test_production_refuses_to_start_when_a_preflight_check_fails(host, server_ip):
    before, slot, lines = current_release(host), live_slot(host), len(ledger(host))
    run = run_playbook(PLAYBOOKS / "production.yml",
                       {"preflight_supported_debian_releases": ["12"], "app_version": "main"},
                       ip=server_ip, timeout=300)
    assert run.returncode != 0
    assert "supported are Debian 12" in run.stdout
    assert "TASK [hardening" not in run.stdout and "TASK [app :" not in run.stdout
    assert current_release(host) == before and live_slot(host) == slot and len(ledger(host)) == lines


def test_no_secret_in_the_output_of_the_playbooks(demo):
    assert OUTPUTS, "no playbook ran"
    values = vault_values()
    assert len(values) >= 4
    for value in values:
        assert all(value not in output for output in OUTPUTS)


# ------------------------------------------------------------------ down

def test_down_removes_everything():
    subprocess.run([*DEMO, "down"], cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    assert docker("inspect", CONTAINER).returncode != 0
    assert docker("inspect", demo_cli.ACME).returncode != 0
    assert docker("volume", "inspect", demo_cli.DOCKER_VOLUME).returncode != 0
    assert docker("network", "inspect", demo_cli.NETWORK).returncode != 0
    assert not demo_cli.STATE_DIR.exists()
    assert not VAULT.exists()

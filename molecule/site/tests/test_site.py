"""The whole site as a visitor and an operator see it, after site.yml and its idempotent rerun.

Probes run on the controller against the server's address on the scenario network, with
the site's name (curl --resolve) and Pebble's root as the only trusted CA. Then the
playbooks an operator runs next: the post-deploy validation (normal, check mode, and with
planted faults it must report), deploy.yml shipping a new version while a second deploy is
stopped by the deploy lock, release retention, rollback.yml (refused when the schema is newer
than the target release, then forced), a backup that the summary reports, and production.yml
refusing to start when a pre-flight check fails. Deploys and rollbacks under constant HTTPS
load, and a release that fails its health gate, are proven host by host behind a balancer in
the multihost scenario. The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402

SERVER = "site-debian13"
testinfra_hosts = [f"ansible://{SERVER}"]

NAME = "app.site.test"
REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
CACHE = REPO / ".cache/molecule/site"
ROOT_CA = CACHE / "acme-root.pem"
OTHER_CA = CACHE / "pebble-tls.pem"
PLAYBOOKS = REPO / "playbooks"
APP_ROOT = "/srv/example"
# The post-deploy validation is proven above; deploys that test something else skip it.
NO_VALIDATION = ("--skip-tags", "verify")
SECRETS = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/web/secrets.yml").read_text())


@pytest.fixture(scope="module")
def server_ip() -> str:
    return (CACHE / "server_ip").read_text().strip()


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


def commit_of(host, tag: str) -> str:
    out = host.run(f"git -c safe.directory='*' -C {APP_ROOT}/repo.git rev-parse {tag}^{{commit}}")
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def summary(output: str) -> str:
    """The summary the validation printed (the debug task's message)."""
    start = output.rfind(f"Post-deploy validation of {SERVER}: ")
    assert start >= 0, output[-3000:]
    return output[start:output.find("\n    ]", start)]


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


def second_slot_is_gone(host) -> bool:
    return host.run("docker ps -aq --filter label=com.docker.compose.project=example-next").stdout.strip() == ""


def upstream_port(host) -> int:
    text = host.file("/etc/nginx/conf.d/shipshape-upstream.conf").content_string
    return int(re.search(r"server 127\.0\.0\.1:(\d+);", text).group(1))


def run_verify(*args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    return testlib.run_playbook(PLAYBOOKS / "verify.yml", extra, *args, timeout=600)


# ------------------------------------------------------------------ from outside

def test_health_answers_over_https_with_a_certificate_from_the_acme_server(host, server_ip):
    proc = curl(server_ip, "/health")
    assert proc.returncode == 0, proc.stderr
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "200"
    health = json.loads(body)
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["version"] == commit_of(host, "v1")


def test_the_certificate_does_not_verify_against_another_ca(server_ip):
    # Negative control: the same request fails when the trusted CA did not sign the chain.
    proc = curl(server_ip, "/health", OTHER_CA)
    assert proc.returncode == 60, (proc.returncode, proc.stderr)


def test_only_ssh_http_and_https_answer_from_outside(server_ip):
    assert {port for port in (22, 80, 443) if answers(server_ip, port)} == {22, 80, 443}
    # 8000: the app (published on 127.0.0.1); 5432: the database; 6379: the planted service;
    # 2375: Docker's API.
    assert [port for port in (8000, 5432, 6379, 2375) if answers(server_ip, port)] == []


def test_ansible_logs_in_over_ssh_as_the_deploy_user_who_may_sudo(host, server_ip):
    # The scenario reaches the server as a rented one is reached: SSH as the deploy user with
    # the run's key (molecule/shared/create.yml), through the hardened sshd and the firewall.
    key = host.ansible.get_variables()["ansible_private_key_file"]
    proc = subprocess.run(
        ["ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ControlPath=none",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
         f"deploy@{server_ip}", "sudo -n sshd -T | grep -E '^(permitrootlogin|passwordauthentication) '"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["passwordauthentication no", "permitrootlogin no"], proc.stdout


def test_the_planted_service_still_listens_so_the_firewall_is_what_closes_it(host):
    assert host.socket("tcp://0.0.0.0:6379").is_listening


def test_the_app_is_published_on_loopback_only(host):
    ports = host.run("docker ps --format '{{.Names}} {{.Ports}}'").stdout
    web = [line for line in ports.splitlines() if "web" in line]
    assert web and all("127.0.0.1:8000->8000/tcp" in line for line in web)
    assert "0.0.0.0:" not in ports


# ------------------------------------------------------------------ the validation play

def test_validation_passes_changes_nothing_and_prints_the_summary(host):
    run = run_verify()
    assert run.returncode == 0, run.stdout[-4000:]
    assert testlib.recap(run.stdout)[SERVER]["changed"] == 0
    text = summary(run.stdout)
    assert re.search(r"all \d+ checks passed", text), text
    assert f"URL:          https://{NAME}/" in text
    assert f"commit:       {commit_of(host, 'v1')}" in text
    assert "issued by Pebble Intermediate CA" in text
    assert "open ports:   22, 80, 443" in text
    assert f"last backup:  {last_backup(host)}" in text
    for check in ("health", "certificate", "headers", "admin page", "rate limit", "allowed ports answer",
                  "other ports closed", "app logs"):
        assert f"PASS  {check}" in text, text


def test_validation_in_check_mode():
    run = run_verify("--check")
    assert run.returncode == 0, run.stdout[-4000:]
    assert testlib.recap(run.stdout)[SERVER]["changed"] == 0
    assert re.search(r"all \d+ checks passed", summary(run.stdout))


def test_validation_reports_every_planted_fault(host):
    # Faults: a port the firewall now lets through to the planted service, a CA bundle that
    # did not sign the certificate, and a log pattern every healthy request matches.
    assert host.run("ufw allow 6379/tcp").rc == 0
    try:
        run = run_verify(extra={"verify_ca_bundle": str(OTHER_CA), "verify_logs_pattern": "GET /health"})
    finally:
        assert host.run("ufw delete allow 6379/tcp").rc == 0
    assert run.returncode != 0
    assert testlib.recap(run.stdout)[SERVER]["changed"] == 0
    text = summary(run.stdout)
    assert "checks FAILED" in text
    for check in ("health", "certificate", "headers", "admin page", "rate limit", "app logs"):
        assert f"FAIL  {check}" in text, text
    assert "the certificate did not verify" in text
    assert "open but not allowed: 6379" in text
    assert "PASS  allowed ports answer" in text
    assert "post-deploy check(s) failed" in run.stdout


# ------------------------------------------------------------------ the other playbooks

def test_a_second_deploy_at_the_same_time_is_stopped_by_the_lock(host, server_ip):
    # A lock left by a deploy whose ansible-playbook is gone (same controller, dead pid):
    # the first deploy removes it and takes the lock.
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = {"deployer": "ops@" + socket.gethostname(), "controller": socket.gethostname(), "pid": gone.pid,
             "started": "2026-01-01T00:00:00Z", "epoch": int(time.time()), "version": "v1"}
    assert host.run(f"printf '%s\\n' {shlex.quote(json.dumps(stale))} > {APP_ROOT}/deploy.lock").rc == 0
    first = subprocess.Popen(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PLAYBOOKS / "deploy.yml"),
         "-e", json.dumps({"app_checkout_version": "v2"}), *NO_VALIDATION],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
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
        second = testlib.run_playbook(PLAYBOOKS / "deploy.yml",
                                      {"app_checkout_version": "v1", "app_release_lock_wait": 0}, *NO_VALIDATION,
                                      timeout=600)
    finally:
        out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-4000:]
    assert "Removed a stale deploy lock" in out
    assert second.returncode != 0
    assert "Another deploy holds the deploy lock /srv/example/deploy.lock" in second.stdout
    assert f"{held['deployer']} from {held['controller']} (ansible-playbook pid {held['pid']})" in second.stdout
    assert "deploying version 'v2'" in second.stdout
    # The blocked deploy changed nothing: the checkout is the first deploy's (v2), not v1.
    assert host.run(f"git -c safe.directory='*' -C {APP_ROOT}/src rev-parse HEAD").stdout.strip() == commit_of(host, "v2")
    assert "TASK [app_checkout" not in second.stdout
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists
    # The first deploy: only the app stage ran (the validation was skipped here), and v2
    # started beside v1 and took the traffic once healthy (the multihost scenario proves
    # that no request fails meanwhile). At rest, the app project serves on 8000 again.
    v2 = commit_of(host, "v2")
    assert "TASK [hardening" not in out and "TASK [tls" not in out
    assert "TASK [app_release : Start the new release on the second port]" in out
    assert served_version(server_ip) == v2
    assert upstream_port(host) == 8000 and second_slot_is_gone(host)
    release = current_release(host)
    assert release["commit"] == v2 and release["image"].endswith(f":{v2}")
    last = ledger(host)[-1]
    assert (last["kind"], last["result"], last["commit"], last["release"]) == ("deploy", "success", v2, release["id"])
    assert last["migrations"] == "none pending" and last["deployed_by"] and last["image_id"].startswith("sha256:")


def test_rollback_refuses_a_release_older_than_the_schema_unless_forced(host, server_ip):
    v1, v2, v3 = commit_of(host, "v1"), commit_of(host, "v2"), commit_of(host, "v3")
    served_before = current_release(host)  # v2, from the deploy above
    assert served_before["commit"] == v2
    # v3 adds a column. Only two releases are kept: the two that served last (v2 and now
    # v3); v1's release goes, with its image.
    run = testlib.run_playbook(PLAYBOOKS / "deploy.yml", {"app_checkout_version": "v3", "app_release_keep": 2},
                               *NO_VALIDATION, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    assert served_version(server_ip) == v3 and ledger(host)[-1]["migrations"] == "applied"
    releases = host.run(f"ls {APP_ROOT}/releases").stdout.split()
    assert releases == sorted([served_before["id"], current_release(host)["id"]])
    assert host.run(f"docker image inspect example-web:{v1}").rc != 0
    assert host.run(f"docker image inspect example-web:{v2}").rc == 0
    # The release that served before v3 (v2) does not know the new migration: refused,
    # nothing changes.
    refused = testlib.run_playbook(PLAYBOOKS / "rollback.yml", timeout=600)
    assert refused.returncode != 0
    assert f"Release {served_before['id']} does not know 1 migration(s) the database has applied: " \
           "notes.0002_note_pinned" in refused.stdout
    assert "app_release_rollback_force=true" in refused.stdout
    assert served_version(server_ip) == v3 and current_release(host)["commit"] == v3
    assert "TASK [app_checkout" not in refused.stdout
    # Forced: back to v2's release without a rebuild; its release directory takes the traffic
    # before the checkout moves (the multihost scenario times this under load).
    forced = testlib.run_playbook(PLAYBOOKS / "rollback.yml", {"app_release_rollback_force": True}, timeout=600)
    assert forced.returncode == 0, forced.stdout[-4000:]
    out = forced.stdout
    assert "WARNING: rolling back" in out
    assert out.index("TASK [app_release : Send new requests to the new release]") < out.index("TASK [app_checkout")
    build = out.split("TASK [app_compose : Build the app image for this version]", 1)[1].split("TASK [", 1)[0]
    assert f"ok: [{SERVER}]" in build and "changed" not in build
    assert served_version(server_ip) == v2
    release = current_release(host)
    assert release["commit"] == v2 and release["id"] == served_before["id"]
    last = ledger(host)[-1]
    assert (last["kind"], last["result"], last["commit"], last["migrations"]) == ("rollback", "success", v2, "not run")
    assert upstream_port(host) == 8000 and second_slot_is_gone(host)


def test_the_summary_reports_the_last_backup(host):
    before = last_backup(host)
    backup = host.run("systemctl start shipshape-backup.service")
    assert backup.rc == 0, backup.stdout + backup.stderr
    after = last_backup(host)
    assert after not in (before, "no backup yet")
    run = run_verify("--tags", "verify_summary")
    assert run.returncode == 0, run.stdout[-4000:]
    assert f"last backup:  {after}" in summary(run.stdout)


def test_production_refuses_to_start_when_a_preflight_check_fails(host):
    before = host.run(f"git -c safe.directory='*' -C {APP_ROOT}/src rev-parse HEAD").stdout
    run = testlib.run_playbook(PLAYBOOKS / "production.yml",
                               {"preflight_supported_debian_releases": ["12"], "app_checkout_version": "v1"},
                               timeout=300)
    assert run.returncode != 0
    assert "supported are Debian 12" in run.stdout
    assert "TASK [hardening" not in run.stdout and "TASK [app_checkout" not in run.stdout
    assert host.run(f"git -c safe.directory='*' -C {APP_ROOT}/src rev-parse HEAD").stdout == before


def test_no_secret_in_the_output_of_the_test_runs():
    log = (REPO / ".cache/molecule/site.runs.log").read_text()
    values = [*SECRETS["app_checkout_env_secrets"].values(), SECRETS["app_superuser_password"],
              SECRETS["backups_restic_password"]]
    for value in values:
        assert value not in log

"""The whole site as a visitor and an operator see it, after site.yml and its idempotent rerun.

Probes run on the controller against the server's address on the scenario network, with
the site's name (curl --resolve) and Pebble's root as the only trusted CA. Then the
playbooks an operator runs next: the post-deploy validation (normal, check mode, and with
planted faults it must report), a new version with deploy.yml, a backup that the summary
reports, and production.yml refusing to start when a pre-flight check fails.
The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
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

def test_deploy_playbook_ships_a_new_version_then_validates_it(host, server_ip):
    run = testlib.run_playbook(PLAYBOOKS / "deploy.yml", {"app_checkout_version": "v2"}, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    v2 = commit_of(host, "v2")
    assert f"commit:       {v2}" in summary(run.stdout)
    # Only the app stage and the validation ran.
    assert "TASK [hardening" not in run.stdout and "TASK [tls" not in run.stdout
    body, status = curl(server_ip, "/health").stdout.rsplit("\n", 1)
    assert status == "200" and json.loads(body)["version"] == v2


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

"""`scripts/demo.py up` starts a real server container and a real ACME server (Pebble),
reaches the server over real SSH with a key made at run time, runs site.yml, and the
example app then answers over HTTPS with a certificate from that ACME server; `down`
removes everything it made (test_demo_operations.py, which goes on with the same server).
The demo fixture (conftest.py) runs `up` once."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

from demo_env import REPO, demo_cli, docker, vault_values

# The hardening role's lockout proof (roles/hardening/tasks/ssh.yml): after sshd reloads,
# a fresh SSH login as the deploy user. It only runs over SSH, which the demo uses.
RECONNECT_TASK = "TASK [hardening : Connect afresh over SSH as the deploy user]"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_up_runs_site_yml_over_ssh(demo):
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "PLAY RECAP" in demo.stdout
    assert "failed=0" in demo.stdout and "unreachable=0" in demo.stdout
    assert "ssh -i .demo/id_ed25519" in demo.stdout
    # The secrets were generated into the vault, and the pre-flight check passed before site.yml.
    assert "created inventories/local/group_vars/all/vault.yml" in demo.stdout
    assert "validate passed" in demo.stdout
    assert demo.stdout.index("validate passed") < demo.stdout.rindex("PLAY RECAP")  # site.yml's


def task_output(output: str, header: str) -> str:
    """What ansible-playbook printed for the task with this header, up to the next header."""
    output = ANSI.sub("", output)
    start = output.find(header)
    assert start >= 0, f"{header} is not in the output"
    ends = [m.start() for m in re.finditer(r"^(TASK|RUNNING HANDLER|PLAY) \[|^PLAY RECAP", output, re.M)
            if m.start() > start]
    return output[start:min(ends, default=len(output))]


def test_the_lockout_proof_reconnects_after_sshd_reloads(demo):
    assert demo.returncode == 0, demo.stdout[-3000:]
    # The demo's first run changes sshd_config, so sshd reloads and the proof must run.
    reload = task_output(demo.stdout, "TASK [hardening : Reload sshd]")
    assert re.search(r"^changed: \[demo\]", reload, re.M), reload
    reconnect = task_output(demo.stdout, RECONNECT_TASK)
    assert re.search(r"^ok: \[demo\]", reconnect, re.M), reconnect
    assert "skipping: [demo]" not in reconnect, reconnect


def test_the_secrets_are_in_the_encrypted_vault_and_never_printed(demo):
    assert demo.returncode == 0
    vault, password_file = demo_cli.VAULT, demo_cli.VAULT_PASSWORD_FILE
    assert vault.read_bytes().startswith(b"$ANSIBLE_VAULT")
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    values = vault_values()
    assert len(values) >= 4
    for value in values:
        assert value not in demo.stdout and value not in demo.stderr


def test_the_printed_curl_command_shows_the_app_over_https(demo):
    assert demo.returncode == 0
    line = next(line for line in demo.stdout.splitlines() if "check:" in line)
    cmd = shlex.split(line.split("check:", 1)[1].strip())
    assert cmd[0] == "curl" and "--cacert" in cmd
    proc = subprocess.run([*cmd, "-s", "-D", "-", "--max-time", "20"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr  # the certificate verified against the demo CA
    # text mode turns the CRLF line ends of the headers into "\n"
    head, _, body = proc.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200") or head.startswith("HTTP/2 200"), head
    assert re.search(r"(?im)^strict-transport-security: max-age=\d+", head)
    health = json.loads(body)
    assert health["status"] == "ok" and health["database"] == "ok"


def test_the_certificate_comes_from_the_demo_acme_server(demo):
    cert = subprocess.run(
        ["sh", "-c", "echo | openssl s_client -connect 127.0.0.1:8443 -servername app.shipshape.test "
         "2>/dev/null | openssl x509 -noout -issuer -ext subjectAltName"],
        capture_output=True, text=True, check=False).stdout
    assert "Pebble" in cert
    assert "DNS:app.shipshape.test" in cert


def test_ssh_is_published_on_loopback_only(demo):
    ports = docker("port", demo_cli.CONTAINER).stdout.split("\n")
    ssh = [line for line in ports if line.startswith("22/tcp")]
    assert ssh == [f"22/tcp -> 127.0.0.1:{demo_cli.SSH_PORT}"]
    assert all("0.0.0.0" not in line and "[::]" not in line for line in ports)


def test_the_generated_key_logs_in_and_may_sudo(demo):
    proc = subprocess.run(
        ["ssh", "-i", str(demo_cli.KEY), "-p", str(demo_cli.SSH_PORT),
         "-o", f"UserKnownHostsFile={demo_cli.KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", f"{demo_cli.DEPLOY_USER}@127.0.0.1", "sudo -n true && hostname"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "demo"
    assert oct(demo_cli.KEY.stat().st_mode & 0o777) == "0o600"

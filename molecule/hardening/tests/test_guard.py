"""Lockout guards: bad deploy keys stop the role, naming the variable, before sshd is touched;
a setting sshd refuses stops it at the check of the new sshd_config (`sshd -T`), before the
file is replaced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from testlib import docker_exec, recap, run_playbook  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prober import key_login  # noqa: E402

SERVER = "hardening-debian13"
# Stands for a private key, generated at run time (no key is kept in the repository).
PRIVATE_KEY = "private key generated at run time"


def private_key(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(tmp_path / "key")],
                   check=True, capture_output=True)
    return (tmp_path / "key").read_text()


def checksums() -> str:
    return docker_exec(SERVER, "sha256sum", "/etc/ssh/sshd_config", "/etc/ssh/moduli",
                       "/home/deploy/.ssh/authorized_keys").stdout


@pytest.mark.parametrize("keys", [
    pytest.param([], id="empty-list"),
    pytest.param(["not a public key"], id="not-a-key"),
    pytest.param([PRIVATE_KEY], id="private-key"),
    pytest.param(["ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 mismatched-type"], id="type-mismatch"),
    pytest.param(["ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE"], id="type-sshd-refuses"),
])
def test_bad_keys_stop_the_role_before_sshd_changes(keys, tmp_path):
    keys = [private_key(tmp_path) if key == PRIVATE_KEY else key for key in keys]
    before = checksums()
    proc = run_playbook("converge.yml", {"hardening_deploy_authorized_keys": keys},
                        "--limit", SERVER, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "hardening_deploy_authorized_keys" in proc.stdout
    assert recap(proc.stdout)[SERVER]["changed"] == 0
    assert checksums() == before
    # A private key pasted by mistake is named by its position, never shown.
    body = [line for key in keys for line in key.splitlines()[2:-1] if len(line) >= 16]
    assert not any(line in proc.stdout for line in body)


def test_a_setting_sshd_refuses_stops_the_role_before_sshd_changes():
    # hardening_ssh_max_startups is a free string: "ten" passes the argument specs, and only
    # `sshd -T` on the new file can refuse it.
    before = checksums()
    proc = run_playbook("converge.yml", {"hardening_ssh_max_startups": "ten"}, "--limit", SERVER, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    out = proc.stdout
    start = out.find("TASK [hardening : Configure the SSH server (validated before it goes live)]")
    assert start >= 0, out[-3000:]
    task = out[start:out.find("PLAY RECAP", start)]
    assert f"fatal: [{SERVER}]" in task and "MaxStartups" in task, task
    assert recap(out)[SERVER]["changed"] == 0
    assert recap(out)[SERVER]["failed"] == 1
    assert checksums() == before
    assert key_login(SERVER)

"""An SSH port change behind an active firewall: ufw lets the new port in before sshd moves,
and the deploy user logs in on the new port from the prober; AllowGroups keeps a user with a
valid key but outside the groups out. Then back to 22 (no group list)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from testlib import docker_exec, recap, run_playbook  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prober import key_login  # noqa: E402

SERVER = "hardening-debian12"
NEW_PORT = 2222


def login(port: int, user: str = "deploy") -> bool:
    return key_login(SERVER, port, user)


def listening_ports() -> set:
    out = docker_exec(SERVER, "ss", "-Hltn").stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def test_port_change_opens_the_firewall_before_sshd_moves():
    proc = run_playbook("port_move.yml", {"hardening_ssh_port": NEW_PORT, "hardening_ssh_allow_groups": ["deploy"]},
                        timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    out = proc.stdout
    opened = out.find("TASK [hardening : Allow the SSH port in ufw before sshd moves to it]")
    reloaded = out.find("TASK [hardening : Reload sshd]")
    assert 0 <= opened < reloaded, out[-4000:]
    assert f"changed: [{SERVER}]" in out[opened:out.find("TASK [", opened + 10)]
    status = docker_exec(SERVER, "ufw", "status").stdout
    assert "Status: active" in status and "Default: deny (incoming)" in docker_exec(
        SERVER, "ufw", "status", "verbose").stdout
    assert f"{NEW_PORT}/tcp" in status and "ALLOW" in status
    ports = listening_ports()
    assert NEW_PORT in ports and 22 not in ports
    # From outside, through the firewall: in on the new port, nothing on the old one.
    assert login(NEW_PORT)
    assert not login(22)
    # "intruder" has the deploy key too (prepare.yml) and logged in before; it is not in the
    # deploy group, so AllowGroups keeps it out.
    assert "AllowGroups deploy" in docker_exec(SERVER, "cat", "/etc/ssh/sshd_config").stdout
    assert not login(NEW_PORT, "intruder")
    assert recap(out)[SERVER]["failed"] == 0


def test_port_change_back_to_22():
    proc = run_playbook("port_move.yml", {"hardening_ssh_port": 22}, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    ports = listening_ports()
    assert 22 in ports and NEW_PORT not in ports
    assert login(22)
    assert login(22, "intruder")  # no group list any more

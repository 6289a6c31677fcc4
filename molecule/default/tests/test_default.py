"""Smoke checks of a test-bed host: systemd booted fully, sshd runs, Python is there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from testlib import container_ip, scenario_dir  # noqa: E402


def test_systemd_reached_running(host):
    state = host.run("systemctl is-system-running")
    assert state.stdout.strip() == "running", host.run("systemctl --failed --no-legend").stdout


def test_no_failed_units(host):
    assert host.run("systemctl --failed --no-legend --plain").stdout.strip() == ""


def test_sshd_is_running_and_listening(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening or host.socket("tcp://:::22").is_listening


def test_release_is_supported(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] in {"12", "13"}


def instances() -> list:
    """The names of the scenario's instances (its platforms)."""
    return [p["name"] for p in yaml.safe_load((scenario_dir() / "molecule.yml").read_text())["platforms"]]


def served_host_keys(instance: str) -> set:
    """The host keys ("type base64") the instance's sshd proves itself with, as a client on
    the scenario network receives them."""
    proc = subprocess.run(["ssh-keyscan", "-T", "10", container_ip(instance)], capture_output=True,
                          text=True, timeout=60, check=False)
    keys = {" ".join(line.split()[1:3]) for line in proc.stdout.splitlines() if line and not line.startswith("#")}
    assert keys, f"{instance} served no host key: {proc.stderr}"
    return keys


def test_host_keys_are_unique_to_the_instance(host):
    """Each instance made its own host keys at first boot: the keys its sshd serves are its
    own key files, no other instance of the scenario serves any of them, the image the
    instances start from holds none, and each private key is root's alone."""
    name = host.backend.get_hostname()
    private_keys = host.check_output("ls /etc/ssh/ssh_host_*_key").split()
    assert "/etc/ssh/ssh_host_ed25519_key" in private_keys
    files = set()
    for private in private_keys:
        key = host.file(private)
        assert key.is_file and key.user == "root" and key.group == "root", private
        assert key.mode == 0o600, f"{private}: {oct(key.mode)}"
        public = " ".join(host.file(f"{private}.pub").content_string.split()[:2])
        # The public file belongs to this private key, not to one copied from elsewhere.
        assert " ".join(host.check_output(f"ssh-keygen -y -f {private}").split()[:2]) == public, private
        files.add(public)

    served = served_host_keys(name)
    assert served == files
    others = [other for other in instances() if other != name]
    assert others, "the scenario has a single instance: nothing to compare with"
    for other in others:
        assert not served & served_host_keys(other), f"{name} and {other} share a host key"

    image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", name], capture_output=True,
                           text=True, check=True).stdout.strip()
    in_image = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/ls",
                               image, "-A", "/etc/ssh"], capture_output=True, text=True, timeout=120, check=False)
    assert in_image.returncode == 0, in_image.stderr
    assert "sshd_config" in in_image.stdout.split()
    assert not [f for f in in_image.stdout.split() if f.startswith("ssh_host_")], in_image.stdout


def test_preflight_left_a_marker_free_host(host):
    # The pre-flight play only reads; it must not leave files behind.
    assert not host.file("/etc/shipshape").exists


def test_the_tests_reach_the_host_over_ssh(host):
    # The scenario's driver is `default`: Molecule and testinfra log in over real SSH with the
    # key create.yml made, not through `docker exec` (which sets no SSH_CONNECTION).
    client_ip, _, server_ip, server_port = host.run("echo $SSH_CONNECTION").stdout.split()
    assert server_port == "22" and client_ip != server_ip

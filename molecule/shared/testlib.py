"""Helpers for the testinfra tests of the Molecule scenarios (and recap() and
link_local_address() for the tests of the demo server).

The tests run on the controller during `molecule verify`, with Molecule's environment
(MOLECULE_INVENTORY_FILE, ANSIBLE_CONFIG, ANSIBLE_ROLES_PATH ...), so they can run
playbooks against the scenario's instances and probe them from outside.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def scenario_dir() -> Path:
    return Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])


def ephemeral_dir() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def run_playbook(playbook: str | Path, extra_vars: dict | None = None, *args: str,
                 timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run a playbook of the scenario against its instances; stdout holds all output."""
    path = Path(playbook)
    if not path.is_absolute():
        path = scenario_dir() / path
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(path)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, timeout=timeout, check=False)
    # Kept beside the scenario's own log, where `make molecule` searches both for secrets.
    log_dir = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".cache" / "molecule"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{os.environ['MOLECULE_SCENARIO_NAME']}.runs.log", "a") as out:
        out.write(f"\n===== {' '.join(cmd)}\n{proc.stdout}")
    return proc


def recap(output: str) -> dict:
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP of a playbook's output."""
    result = {}
    lines = output.splitlines()
    if "PLAY RECAP" not in output:
        return result
    start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    for line in lines[start + 1:]:
        if ":" not in line or "=" not in line:
            continue
        host, _, counts = line.partition(":")
        result[host.strip()] = {k: int(v) for k, v in
                                (item.split("=") for item in counts.split())}
    return result


def container_ip(name: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        capture_output=True, text=True, check=True).stdout.split()
    return out[0]


def link_local_address(name: str, via: str = "eth0") -> str:
    """The container's link-local IPv6 address on its network, scoped to the interface `via`
    it is reached through: 'fe80::...%eth0' from a peer on the same network, the network's
    bridge from the machine. The container needs IPv6 on (platform
    `sysctls: {net.ipv6.conf.all.disable_ipv6: 0}`, molecule/shared/create.yml)."""
    out = docker_exec(name, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link", timeout=30)
    assert out.returncode == 0, out.stderr
    addresses = [word.split("/")[0] for word in out.stdout.split() if word.startswith("fe80:")]
    assert addresses, f"{name} has no link-local IPv6 address on eth0 (is IPv6 on?): {out.stdout}"
    return f"{addresses[0]}%{via}"


def docker_exec(name: str, *cmd: str, input_text: str | None = None,
                timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", "-i", name, *cmd], input=input_text,
                          capture_output=True, text=True, timeout=timeout, check=False)

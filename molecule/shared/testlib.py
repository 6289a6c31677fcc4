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
import sys
import tempfile
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
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    # Extra variables go in a private file, not on the command line that the log below
    # records: a test may pass a secret (a key, a password) on purpose.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="extra-vars-") as extra:
        if extra_vars:
            json.dump(extra_vars, extra)
            extra.flush()
            cmd += ["-e", f"@{extra.name}"]
        cmd += list(args)
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


PORTSCAN = Path(__file__).resolve().parent / "portscan.py"
# Every SYN a scan sends passes this machine's connection tracking (Docker's bridges go
# through its netfilter); an unanswered one stays tracked for two minutes. Scans take turns
# (a lock shared by every job of `make test`) and start only while the table has room for
# one more, so a scan never fills it and drops other tests' connections.
_SCAN_LOCK = Path("/tmp/shipshape-portscan.lock")
_CONNTRACK = Path("/proc/sys/net/netfilter")


def _conntrack_room(needed: int) -> bool:
    try:
        count = int((_CONNTRACK / "nf_conntrack_count").read_text())
        limit = int((_CONNTRACK / "nf_conntrack_max").read_text())
    except (OSError, ValueError):
        return True  # no connection tracking here
    return count + needed < limit * 0.8


def open_tcp_ports(target: str, prober: str | None = None, ports: str = "1-65535",
                   timeout: float = 1.5) -> list:
    """The TCP ports of `target` that accept a connection, out of every port (or `ports`),
    scanned all at once from the container `prober` (or from this machine). A port that
    cannot be told open or closed fails the scan: assert on the list this returns."""
    import fcntl
    import time

    count = sum(int(high or low) - int(low) + 1 for low, _, high in (p.partition("-") for p in ports.split(",")))
    args = [target, "--ports", ports, "--timeout", str(timeout)]
    cmd = (["docker", "exec", "-i", prober, "python3", "-", *args] if prober
           else [sys.executable, str(PORTSCAN), *args])
    with open(_SCAN_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deadline = time.monotonic() + 240
        while not _conntrack_room(count) and time.monotonic() < deadline:
            time.sleep(5)
        proc = subprocess.run(cmd, input=PORTSCAN.read_text() if prober else None, capture_output=True,
                              text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"port scan of {target} failed: {proc.stdout} {proc.stderr}"
    result = json.loads(proc.stdout)
    assert result["scanned"] == count, result
    return result["open"]

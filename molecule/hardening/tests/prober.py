"""Logins from the prober container with the deploy key, shared by the hardening tests."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from testlib import docker_exec  # noqa: E402

PROBER = "hardening-prober"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "BatchMode=yes", "-i", "/root/.ssh/id_ed25519"]


def key_login(server: str, port: int = 22, user: str = "deploy") -> bool:
    """USER logs in to SERVER from the prober on PORT with the deploy key (fail2ban's bans
    lifted first)."""
    docker_exec(server, "fail2ban-client", "unban", "--all")
    for _ in range(10):
        proc = docker_exec(PROBER, "ssh", *SSH_OPTS, "-p", str(port), f"{user}@{server}", "id -un", timeout=60)
        if proc.returncode == 0:
            return proc.stdout.strip() == user
        if "Permission denied" in proc.stderr or "refused" in proc.stderr or "timed out" in proc.stderr:
            return False
        time.sleep(3)  # OpenSSH's per-source penalty after earlier refusals
    return False

"""`scripts/demo.py up` starts a real server container, reaches it over real SSH with a key
made at run time, runs site.yml; `down` removes everything it made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, str(REPO / "scripts/demo.py")]


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def demo():
    if docker("inspect", "shipshape-demo").returncode == 0:
        pytest.skip("a demo server is already running here; `make demo-down` first")
    proc = subprocess.run([*DEMO, "up"], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)
    yield proc
    down = subprocess.run([*DEMO, "down"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert down.returncode == 0, down.stderr


def test_up_runs_site_yml_over_ssh(demo):
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "PLAY RECAP" in demo.stdout
    assert "failed=0" in demo.stdout and "unreachable=0" in demo.stdout
    assert "ssh -i .demo/id_ed25519" in demo.stdout


def test_ssh_is_published_on_loopback_only(demo):
    ports = docker("port", "shipshape-demo").stdout.split("\n")
    ssh = [line for line in ports if line.startswith("22/tcp")]
    assert ssh == ["22/tcp -> 127.0.0.1:2222"]
    assert all("0.0.0.0" not in line and "[::]" not in line for line in ports)


def test_the_generated_key_logs_in_and_may_sudo(demo):
    proc = subprocess.run(
        ["ssh", "-i", str(REPO / ".demo/id_ed25519"), "-p", "2222",
         "-o", f"UserKnownHostsFile={REPO / '.demo/known_hosts'}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "deploy@127.0.0.1", "sudo -n true && hostname"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "demo"
    assert oct((REPO / ".demo/id_ed25519").stat().st_mode & 0o777) == "0o600"


def test_down_removes_everything():
    # Runs after the module fixture has been torn down only if ordered last; check directly.
    subprocess.run([*DEMO, "down"], cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    assert docker("inspect", "shipshape-demo").returncode != 0
    assert docker("volume", "inspect", "shipshape-demo-var-lib-docker").returncode != 0
    assert docker("network", "inspect", "shipshape-demo").returncode != 0
    assert not (REPO / ".demo").exists()

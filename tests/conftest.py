"""The demo server, shared by the tests of `make demo` (test_demo.py) and of what an operator
does next with the server it deploys (test_demo_operations.py): `scripts/demo.py up` runs
once for both, and `down` at the end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, str(REPO / "scripts/demo.py")]
sys.path.insert(0, str(REPO / "scripts"))
import demo as demo_cli  # noqa: E402  scripts/demo.py: the demo's names and paths


def vault_values() -> list:
    """The secret values in the demo's vault (inventories/local), decrypted with its password."""
    plain = subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "view", "--vault-password-file",
                            str(demo_cli.VAULT_PASSWORD_FILE), str(demo_cli.VAULT)],
                           capture_output=True, text=True, check=True).stdout
    return re.findall(r'^vault_\w+: "(.+)"$', plain, re.M)


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def demo():
    """What `scripts/demo.py up` printed; the demo is up (or the tests show why not)."""
    if docker("inspect", demo_cli.CONTAINER).returncode == 0:
        pytest.skip("a demo server is already running here; `make demo-down` first")
    proc = subprocess.run([*DEMO, "up"], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)
    yield proc
    down = subprocess.run([*DEMO, "down"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert down.returncode == 0, down.stderr

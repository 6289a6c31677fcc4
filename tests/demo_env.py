"""What the demo tests share besides the `demo` fixture (tests/conftest.py): where the
repository and scripts/demo.py are, the demo's names and paths (scripts/demo.py itself,
imported as `demo_cli`), the values in its vault, and a quiet `docker` call.

A plain module, so that the test files never import a module named `conftest` (pytest
loads one conftest.py per directory, and a second one at the repository's root would make
that name ambiguous)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, str(REPO / "scripts/demo.py")]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))
import demo as demo_cli  # noqa: E402  scripts/demo.py: the demo's names and paths


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def vault_values() -> list:
    """The secret values in the demo's vault (inventories/local), decrypted with its password."""
    plain = subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "view", "--vault-password-file",
                            str(demo_cli.VAULT_PASSWORD_FILE), str(demo_cli.VAULT)],
                           capture_output=True, text=True, check=True).stdout
    return re.findall(r'^vault_\w+: "(.+)"$', plain, re.M)


def demo_leftovers() -> list:
    """What an earlier demo left on this machine (a `make demo` still up, or a run that
    crashed before `down`): its containers, volume and network, its state directory and
    its generated vault. `up` would reuse them, so the tests would not see a fresh demo."""
    found = [f"container {name}" for name in (demo_cli.CONTAINER, demo_cli.ACME)
             if docker("container", "inspect", name).returncode == 0]
    if docker("volume", "inspect", demo_cli.DOCKER_VOLUME).returncode == 0:
        found.append(f"volume {demo_cli.DOCKER_VOLUME}")
    if docker("network", "inspect", demo_cli.NETWORK).returncode == 0:
        found.append(f"network {demo_cli.NETWORK}")
    for path in (demo_cli.STATE_DIR, demo_cli.VAULT):
        if path.exists():
            found.append(str(path.relative_to(REPO)))
    return found


def say(request, line: str) -> None:
    """Print a line to the terminal even while pytest captures the output."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(line, flush=True)

"""The demo server, shared by the tests of `make demo` (test_demo.py) and of what an operator
does next with the server it deploys (test_demo_operations.py): `scripts/demo.py up` runs
once for both, and `down` at the end. What else they share is in demo_env.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# demo_env sits beside this file; the test files import it too, whichever import mode runs them.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_env import DEMO, REPO, demo_cli, demo_leftovers, docker, say  # noqa: E402


@pytest.fixture(scope="session")
def demo(request):
    """What `scripts/demo.py up` printed; the demo is up (or the tests show why not).

    The tests always run against a demo that `up` made just now: what an earlier demo left
    (one still up from `make demo`, or a run that crashed) is removed with `down` first,
    never skipped over."""
    leftovers = demo_leftovers()
    if leftovers:
        down = subprocess.run([*DEMO, "down"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        assert down.returncode == 0 and not demo_leftovers(), \
            f"could not remove the leftover demo ({', '.join(leftovers)}): {down.stdout}{down.stderr}"
        say(request, f"\nremoved a leftover demo server ({', '.join(leftovers)}) with `scripts/demo.py down`, "
                     "so that the demo tests run against a fresh `scripts/demo.py up`")
    proc = subprocess.run([*DEMO, "up"], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)
    yield proc
    down = subprocess.run([*DEMO, "down"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert down.returncode == 0, down.stderr
    assert docker("container", "inspect", demo_cli.CONTAINER).returncode != 0

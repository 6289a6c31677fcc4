"""Fixtures of the tls scenario's tests."""

from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import testlib  # noqa: E402
from tlsprobe import ACME, EDGE, pebble_root_pem  # noqa: E402


@pytest.fixture(scope="session")
def edge_ip() -> str:
    return testlib.container_ip(EDGE)


@pytest.fixture(scope="session")
def pebble_root(tmp_path_factory) -> Path:
    """Pebble's root as the session starts; the edge's certificates must chain to it."""
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pebble_root_pem())
    return path


@pytest.fixture(scope="session", autouse=True)
def fresh_check_run():
    """`--check` of converge.yml on tls-acme, a host without nginx or certbot, run in the
    background from the start of the session (it touches neither the edge nor Pebble)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        future: Future = pool.submit(testlib.run_playbook, "converge.yml", {"tls_test_hosts": "acme"},
                                     "--check")
        yield future


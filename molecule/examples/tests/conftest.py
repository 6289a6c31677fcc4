"""Fixtures of the examples scenario's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from tlsprobe import pebble_root_pem  # noqa: E402

ACME = "examples-acme"


@pytest.fixture(scope="session")
def cafile(tmp_path_factory) -> Path:
    """Pebble's root: the servers' certificates must chain to it."""
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pebble_root_pem(ACME))
    return path


"""molecule/shared/portscan.py, the scan behind every "only these ports answer from outside"
claim: an open port reads open, a closed one refused, and a connection the kernel completed
reads open even when the scan's wait for it timed out first (a busy machine)."""

from __future__ import annotations

import importlib.util
import socket
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "molecule/shared/portscan.py"
spec = importlib.util.spec_from_file_location("portscan", SCRIPT)
portscan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(portscan)


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(port: int) -> socket.socket:
    """A non-blocking connect to port, given time to finish in the kernel."""
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    time.sleep(0.2)
    return sock


def test_scan_tells_open_from_refused(listener):
    closed = free_port()
    assert portscan.scan("127.0.0.1", [listener, closed], timeout=2) == {listener: "open", closed: "refused"}


def test_a_completed_connection_is_open_after_a_late_timeout(listener):
    with started(listener) as sock:
        assert portscan.settled(sock) == "open"


def test_a_refused_connection_stays_refused_after_a_late_timeout():
    with started(free_port()) as sock:
        assert portscan.settled(sock) == "refused"


def test_a_connection_without_an_answer_is_dropped():
    with socket.socket() as sock:
        assert portscan.settled(sock) == "dropped"


def test_the_command_prints_the_open_ports(listener, capsys):
    assert portscan.main(["127.0.0.1", "--ports", f"{listener},{free_port()}"]) == 0
    assert f'"open": [{listener}]' in capsys.readouterr().out

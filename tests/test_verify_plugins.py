"""The verify role's modules that run without a server: the `app logs` check and the JSON files
of verify_read_server, and verify_tcp_ports' second try of a port that should answer."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parent.parent / "roles" / "verify" / "library"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, LIBRARY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


read_server = load("verify_read_server")
tcp_ports = load("verify_tcp_ports")
PATTERN = r"(?i)\b(error|critical|fatal|traceback|exception)\b"
SECRET = "Zq8vT3pL0xW9yR2k"


def check(outputs, list_failed=(), read_failed=(), ignore="", max_lines=20, secrets=()):
    return read_server.log_check(outputs, list(list_failed), list(read_failed), ["ex-a", "ex-b"], "15m",
                                 PATTERN, ignore, max_lines, list(secrets))


def test_clean_logs_pass_and_name_the_containers():
    result = check({"ex-a-web-1": ("GET /health 200\n", ""), "ex-a-worker-1": ("", "heartbeat\n")})
    assert result == {"check": "app logs", "ok": True, "lines": [],
                      "detail": f"no line of the last 15m matches {PATTERN} (containers ex-a-web-1, ex-a-worker-1)"}


def test_error_lines_on_stdout_and_stderr_fail_with_the_secrets_masked():
    result = check({"ex-a-web-1": ("ok\nTraceback (most recent call last):\n", f"ERROR login failed for {SECRET}\n")},
                   secrets=[SECRET, "abc"])
    assert result["ok"] is False
    assert result["detail"].startswith("2 lines of the last 15m match")
    assert result["lines"] == ["ex-a-web-1  | Traceback (most recent call last):",
                               "ex-a-web-1  | ERROR login failed for ********"]
    assert SECRET not in json.dumps(result)


def test_colour_codes_do_not_hide_an_error_and_ignored_lines_do_not_count():
    coloured = "\x1b[31mERROR\x1b[0m disk full\n"
    assert check({"c": (coloured, "")})["ok"] is False
    assert check({"c": ("error: expected noise\n", "")}, ignore="expected noise")["ok"] is True


def test_only_the_first_lines_are_kept():
    result = check({"c": ("error\n" * 30, "")}, max_lines=5)
    assert result["detail"].startswith("30 lines") and len(result["lines"]) == 5


@pytest.mark.parametrize("outputs, list_failed, read_failed, detail", [
    ({}, ["ex-b"], [], "docker ps failed for project ex-b"),
    ({}, [], [], "no running container in the Compose projects ex-a, ex-b"),
    ({"c": ("", "")}, [], ["d"], "docker logs failed for d"),
])
def test_what_cannot_be_read_fails_the_check(outputs, list_failed, read_failed, detail):
    result = check(outputs, list_failed, read_failed)
    assert result["ok"] is False and result["detail"] == detail


def test_json_files_missing_or_broken_read_as_none(tmp_path):
    good = tmp_path / "release.json"
    good.write_text('{"commit": "abc"}')
    broken = tmp_path / "status.json"
    broken.write_text("{not json")
    assert read_server.read_json(str(good)) == {"commit": "abc"}
    assert read_server.read_json(str(broken)) is None
    assert read_server.read_json(str(tmp_path / "missing.json")) is None


def test_probe_tells_an_open_port_from_a_closed_one():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    try:
        port = server.getsockname()[1]
        assert tcp_ports.probe("127.0.0.1", [port, closed], 2) == {port}
        assert tcp_ports.probe("127.0.0.1", [], 2) == set()
    finally:
        server.close()

"""Fixtures of the docker scenario: an image inside the inner engine and shell helpers.

The inner engine cannot pull (the test bed has no registry), so the controller copies one of
its own images into it with `docker save | docker exec -i ... docker load`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

import testlib  # noqa: E402

INSTANCE = "docker-debian13"
REFUSED = "docker-debian12"
IMAGE = "shipshape/host:debian13"


def sh(script: str, name: str = INSTANCE, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a shell script inside an instance, as root."""
    return testlib.docker_exec(name, "sh", "-c", script, timeout=timeout)


def ok(script: str, name: str = INSTANCE) -> str:
    proc = sh(script, name)
    assert proc.returncode == 0, f"{script!r} failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
    return proc.stdout.strip()


def docker_pid() -> int:
    return int(ok("systemctl show -p MainPID --value docker.service"))


def daemon_json_sha() -> str:
    return ok("sha256sum /etc/docker/daemon.json").split()[0]


@pytest.fixture(scope="session")
def inner_image() -> str:
    """The host image, loaded into the engine that runs inside the instance."""
    if sh(f"docker image inspect {IMAGE} >/dev/null").returncode != 0:
        save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "exec", "-i", INSTANCE, "docker", "load"], stdin=save.stdout,
                              capture_output=True, text=True, timeout=600, check=False)
        save.stdout.close()
        assert save.wait() == 0
        assert load.returncode == 0, load.stderr
    return IMAGE


@pytest.fixture(scope="session")
def web(inner_image: str) -> str:
    """A web server in a container whose `ports:` line names no host address (8080:8000),
    and a control container published explicitly on every IPv4 and every IPv6 address
    (0.0.0.0:8081:8000 and [::]:8081:8000)."""
    for name, ports in (("web", "-p 8080:8000"), ("web-public", "-p 0.0.0.0:8081:8000 -p [::]:8081:8000")):
        sh(f"docker rm -f {name}")
        ok(f"docker run -d --name {name} {ports} {inner_image} python3 -m http.server 8000")
    for port in (8080, 8081):
        wait_http(f"http://127.0.0.1:{port}/")
    return "web"


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    probe = f"python3 -c \"import urllib.request; urllib.request.urlopen('{url}', timeout=2)\""
    while sh(probe).returncode != 0:
        assert time.monotonic() < deadline, f"{url} did not answer inside {INSTANCE}"
        time.sleep(1)

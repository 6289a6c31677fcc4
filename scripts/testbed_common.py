"""Shared helpers for the test-bed scripts (engine, images, demo server).

Nothing here changes the machine by itself; the scripts that import it do.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = "shipshape"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Debian release names the mirror parser recognises as a Debian archive suite.
DEBIAN_SUITES = {
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldstable", "stable", "testing", "unstable",
}


class TestbedError(RuntimeError):
    """A failure with a message meant for the person running the script."""


def say(msg: str) -> None:
    print(f"[{PROJECT}] {msg}", flush=True)


def die(msg: str, code: int = 1) -> None:
    print(f"[{PROJECT}] ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def run(cmd, *, check=True, capture=False, input_bytes=None, timeout=None, env=None, cwd=None):
    """Run a command; raise TestbedError naming it when it fails and check is set."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        input=input_bytes,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        detail = ""
        if capture and proc.stderr:
            detail = ": " + proc.stderr.decode(errors="replace").strip()[-2000:]
        raise TestbedError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}{detail}")
    return proc


# --------------------------------------------------------------------------- docker

def docker_answers(timeout: float = 10) -> bool:
    """True when a Docker engine answers the client."""
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def wait_for_docker(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if docker_answers(timeout=5):
            return True
        time.sleep(1)
    return False


def image_exists(ref: str) -> bool:
    proc = subprocess.run(["docker", "image", "inspect", ref],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return proc.returncode == 0


# --------------------------------------------------------------------------- apt mirror

@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple
    components: tuple


def _parse_deb822(text: str) -> list:
    sources = []
    for stanza in text.split("\n\n"):
        fields = {}
        key = None
        for raw in stanza.splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if not fields:
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            sources.append(AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()),
                                     tuple(fields.get("components", "").split())))
    return sources


def _parse_one_line(text: str) -> list:
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        parts = line.split()[1:]
        if parts and parts[0].startswith("["):
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts.pop(0) if parts else None
        if len(parts) >= 2:
            sources.append(AptSource(parts[0].rstrip("/"), (parts[1],), tuple(parts[2:])))
    return sources


def apt_sources(root: str = "/") -> list:
    """Every enabled binary source in the machine's apt configuration."""
    base = Path(root) / "etc/apt"
    found = []
    legacy = base / "sources.list"
    if legacy.is_file():
        found += _parse_one_line(legacy.read_text(errors="replace"))
    for path in sorted(glob.glob(str(base / "sources.list.d" / "*"))):
        text = Path(path).read_text(errors="replace")
        if path.endswith(".sources"):
            found += _parse_deb822(text)
        elif path.endswith(".list"):
            found += _parse_one_line(text)
    return found


def _suite_base(suite: str) -> str:
    return suite.split("-", 1)[0].split("/", 1)[0]


def debian_mirrors(root: str = "/") -> tuple:
    """(archive URI, security URI or None) taken from the machine's apt configuration."""
    archive = security = None
    for src in apt_sources(root):
        debian_suites = [s for s in src.suites if _suite_base(s) in DEBIAN_SUITES]
        if not debian_suites:
            continue
        if any(s.endswith("-security") or s.endswith("/updates") for s in debian_suites):
            security = security or src.uri
        elif archive is None:
            archive = src.uri
    if archive is None:
        raise TestbedError(
            "no Debian archive found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources; "
            "pass --mirror URL (the Debian mirror this machine may use)")
    return archive, security

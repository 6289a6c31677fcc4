#!/usr/bin/env python3
"""Make sure a Docker engine answers on this machine.

When no engine answers and we are root on Debian, install Debian's docker.io and
start dockerd in the background, then wait until it answers. Otherwise stop with a
message that says what to install. Exit 0 only when `docker info` answers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testbed_common import TestbedError, die, docker_answers, run, say, wait_for_docker  # noqa: E402

DOCKERD_LOG = Path("/var/log/shipshape-dockerd.log")


def is_debian(os_release: Path = Path("/etc/os-release")) -> bool:
    try:
        text = os_release.read_text()
    except OSError:
        return False
    ids = set()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids.update(value.strip().strip('"').split())
    return "debian" in ids


def start_dockerd() -> None:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise TestbedError("dockerd is not on PATH after installing docker.io")
    say(f"starting dockerd in the background (log: {DOCKERD_LOG})")
    log = open(DOCKERD_LOG, "ab")  # noqa: SIM115 - handed to the daemon, which outlives us
    subprocess.Popen([dockerd], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wait", type=float, default=60,
                        help="seconds to wait for a started engine to answer (default 60)")
    parser.add_argument("--no-install", action="store_true",
                        help="never install or start anything; only report")
    args = parser.parse_args(argv)

    if docker_answers():
        say("a Docker engine answers")
        return 0
    if args.no_install:
        die("no Docker engine answers (`docker info` failed); start one, or run without --no-install")

    if os.geteuid() != 0 or not is_debian():
        why = "not root" if os.geteuid() != 0 else "this is not Debian"
        die(f"no Docker engine answers and this script will not install one ({why}). "
            "Install and start a Docker engine (Debian/Ubuntu: `sudo apt-get install docker.io` "
            "and `sudo systemctl start docker`; elsewhere: Docker Engine or Docker Desktop), "
            "make sure `docker info` works for your user, then run this again.")

    try:
        if shutil.which("dockerd") is None:
            say("installing Debian's docker.io (apt-get)")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            run(["apt-get", "update", "-q"], env=env)
            run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                 "docker.io", "iptables", "debootstrap"], env=env)
        start_dockerd()
    except TestbedError as exc:
        die(f"installing or starting the Docker engine failed: {exc}")

    if not wait_for_docker(args.wait):
        die(f"dockerd was started but did not answer within {args.wait:.0f}s; see {DOCKERD_LOG}")
    say("a Docker engine answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What an idempotent Ansible run of real roles costs over `docker exec` and over SSH.

The Molecule test bed reaches a host in one of two ways: `docker exec` (the
community.docker.docker connection) or real SSH, as a server is reached (one multiplexed
connection, no compression); pipelining is on for both. This starts a Debian 13 host
container from the test-bed image, converges it once over SSH with the docker role
(Debian's engine, a `deploy` user in the docker group) and the ufw role, then runs the same
playbook RUNS times over each connection, alternating; each of those runs must change
nothing. Then it copies one image archive (shipshape/base:debian13) to the host RUNS times
each over multiplexed SSH, over SSH with compression (-C) and through `docker exec -i`.
It prints the median wall time, the median CPU time the whole machine spent (controller,
Docker engine and host together) and the ratios SSH / docker exec and -C / plain.

  bench_connection.py             3 runs of each
  bench_connection.py --runs 5

Needs the virtualenv, a Docker engine, ssh and ssh-keygen, the test-bed images
(`make images`) and the Debian mirror the host's apt uses (the first converge installs
Docker and UFW). Run it on an otherwise idle machine: the CPU figures are the whole machine's.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from bench_tasks import BIN, busy_cpu_seconds  # noqa: E402
from demo import container_ip, run_host  # noqa: E402
from testbed_common import PROJECT, TestbedError, die, docker_answers, image_exists, run  # noqa: E402

NAME = f"{PROJECT}-bench-connection"
VOLUME = f"{NAME}-var-lib-docker"
HOST_IMAGE = f"{PROJECT}/host:debian13"
ARCHIVE_IMAGE = f"{PROJECT}/base:debian13"
SSH_COMMON = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
# The test bed's drop-in (molecule/shared/tasks/docker_inside.yml): in a container
# /proc/sys is read-only, and the inner Docker engine needs this to start containers.
DROPIN = ("mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\n"
          "Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\\n' "
          "> /etc/systemd/system/docker.service.d/10-test-bed.conf && systemctl daemon-reload")
PLAYBOOK = """\
- name: Docker and UFW
  hosts: all
  become: true
  gather_facts: true
  pre_tasks:
    - name: Create the deploy user
      ansible.builtin.user:
        name: deploy
        shell: /bin/bash
  roles:
    - role: docker
      vars:
        docker_install_source: distribution
        docker_users: [deploy]
    - role: ufw
"""


def mux(tmp: Path, tag: str = "cm") -> list:
    """SSH options for one shared connection per host, kept 60 s after its last use."""
    return ["-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", f"ControlPath={tmp}/{tag}-%C"]


def timed(cmd: list, stdin=None, env=None) -> tuple:
    """Run cmd; return its wall time, the whole machine's CPU time meanwhile and the process."""
    cpu0, t0 = busy_cpu_seconds(), time.monotonic()
    proc = subprocess.run(cmd, stdin=stdin, env=env, capture_output=True, text=True, check=False)
    return time.monotonic() - t0, busy_cpu_seconds() - cpu0, proc


def tail(proc: subprocess.CompletedProcess) -> str:
    return f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}".strip()


def play(tmp: Path, inventory: str, label: str, idempotent: bool = True) -> tuple:
    """One ansible-playbook run of the playbook; with idempotent, it must report changed=0."""
    (tmp / "hosts").write_text(inventory + "\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    wall, cpu, proc = timed([str(BIN / "ansible-playbook"), "-i", str(tmp / "hosts"),
                             str(tmp / "playbook.yml")], env=env)
    if proc.returncode != 0 or "PLAY RECAP" not in proc.stdout:
        raise TestbedError(f"the {label} failed (exit {proc.returncode}):\n{tail(proc)}")
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", proc.stdout.split("PLAY RECAP")[-1]))
    if idempotent and changed:
        raise TestbedError(f"the {label} was not idempotent (changed={changed} in its PLAY RECAP):\n"
                           f"{tail(proc)}")
    return wall, cpu


def wait_for_port(ip: str, port: int = 22, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TestbedError(f"nothing answers on {ip}:{port} in {NAME}")


def remove_host() -> None:
    for cmd in (["docker", "rm", "-f", "-v", NAME], ["docker", "volume", "rm", "-f", VOLUME],
                ["docker", "network", "rm", NAME]):
        subprocess.run(cmd, capture_output=True, check=False)


def bench(tmp: Path, runs: int, host: dict) -> tuple:
    key = tmp / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", NAME, "-f", str(key)], capture=True)
    run_host(NAME, NAME, "bench", "-v", f"{VOLUME}:/var/lib/docker")
    run(["docker", "exec", "-i", NAME, "sh", "-c",
         "umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys"],
        input_bytes=key.with_suffix(".pub").read_bytes(), capture=True)
    run(["docker", "exec", NAME, "sh", "-c", DROPIN], capture=True)
    ip = host["ip"] = container_ip(NAME)
    wait_for_port(ip)
    (tmp / "ansible.cfg").write_text(
        f"[defaults]\ninterpreter_python = /usr/bin/python3\nroles_path = {REPO / 'roles'}\n\n"
        f"[connection]\npipelining = true\n\n"
        f"[ssh_connection]\npipelining = true\nssh_args = {' '.join(mux(tmp))}\n")
    (tmp / "playbook.yml").write_text(PLAYBOOK)
    over = {"docker exec": f"{NAME} ansible_connection=community.docker.docker",
            "ssh": (f"{NAME} ansible_connection=ssh ansible_host={ip} ansible_user=root "
                    f"ansible_ssh_private_key_file={key} ansible_ssh_common_args='{' '.join(SSH_COMMON)}'")}
    print(f"[bench] converging {NAME} over SSH (installs Docker and UFW)", flush=True)
    play(tmp, over["ssh"], "converge over SSH", idempotent=False)
    plays = {method: [] for method in over}
    for n in range(1, runs + 1):
        for method, inventory in over.items():
            plays[method].append(play(tmp, inventory, f"idempotent run {n} over {method}"))
            print(f"[bench] run {n} {method:<11}: {plays[method][-1][0]:6.1f} s wall, "
                  f"{plays[method][-1][1]:6.1f} s CPU", flush=True)

    archive = tmp / "image.tar"
    run(["docker", "image", "save", "-o", str(archive), ARCHIVE_IMAGE], capture=True)
    ssh = ["ssh", "-i", str(key), *SSH_COMMON]
    login = {"ssh": [*ssh, *mux(tmp), f"root@{ip}"],
             "ssh -C": [*ssh, "-C", *mux(tmp, "cm-compressed"), f"root@{ip}"]}
    for cmd in login.values():  # open both connections before measuring
        run([*cmd, "true"], capture=True)
    copy = {"ssh": [*login["ssh"], "cat > /tmp/x"], "ssh -C": [*login["ssh -C"], "cat > /tmp/x"],
            "docker exec": ["docker", "exec", "-i", NAME, "sh", "-c", "cat > /tmp/x"]}
    copies = {method: [] for method in copy}
    for n in range(1, runs + 1):
        for method, cmd in copy.items():
            with archive.open("rb") as stdin:
                wall, cpu, proc = timed(cmd, stdin=stdin)
            if proc.returncode != 0:
                raise TestbedError(f"copying the archive over {method} failed:\n{tail(proc)}")
            copies[method].append((wall, cpu))
            print(f"[bench] copy {n} {method:<11}: {wall:6.1f} s wall, {cpu:6.1f} s CPU", flush=True)
    return plays, copies, archive.stat().st_size / 1e6


def table(title: str, results: dict, ratios: list) -> None:
    """Medians of (wall, CPU) per method, then the ratio of each (top, bottom) pair."""
    medians = {m: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
               for m, r in results.items()}
    print(f"\n{title:<52}{'wall':>9}{'CPU':>9}")
    for method, (wall, cpu) in medians.items():
        print(f"  {method:<50}{wall:7.1f} s{cpu:7.1f} s")
    for top, bottom in ratios:
        (w1, c1), (w0, c0) = medians[top], medians[bottom]
        print(f"  {'ratio ' + top + ' / ' + bottom:<50}{w1 / w0:9.2f}{c1 / c0 if c0 else float('nan'):9.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each method (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not docker_answers():
        die("no Docker engine answers; start one (scripts/ensure_docker.py), then `make images`")
    for image in (HOST_IMAGE, ARCHIVE_IMAGE):
        if not image_exists(image):
            die(f"the test-bed image {image} is missing; build it with `make images`")
    remove_host()  # what an interrupted run left
    host: dict = {}
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT}-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            plays, copies, size = bench(tmp, args.runs, host)
        except TestbedError as exc:
            die(str(exc))
        finally:
            if "ip" in host:  # close the shared SSH connections before their host goes
                for tag in ("cm", "cm-compressed"):
                    subprocess.run(["ssh", "-o", f"ControlPath={tmp}/{tag}-%C", "-O", "exit",
                                    f"root@{host['ip']}"], capture_output=True, check=False)
            remove_host()
    table(f"Idempotent run of docker + ufw, median of {args.runs}", plays, [("ssh", "docker exec")])
    table(f"Copy of a {size:.0f} MB image archive, median of {args.runs}", copies,
          [("ssh", "docker exec"), ("ssh -C", "ssh")])
    return 0


if __name__ == "__main__":
    sys.exit(main())

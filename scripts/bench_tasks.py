#!/usr/bin/env python3
"""What one Ansible task costs on a test-bed host, with and without its bytecode cache.

The test suite's time follows the number of tasks it runs: each task sends its module to
the host, where Python imports it from a zip archive and, without a cache, compiles that
source again every time. The host images carry a bytecode cache for it
(scripts/image_files/shipshape_ansiballz_cache.py). This starts a Debian 13 host container
from the test-bed image and runs a playbook of TASKS trivial tasks (`command: true`) over
`docker exec` (community.docker.docker, pipelining on), alternating runs with the
cache on and off (its .pth file moved aside). For each it prints the median wall time, the
median CPU time the whole machine spent (controller, Docker engine and host together), the
time per task and the ratio of the two.

  bench_tasks.py                  5 runs each of 60 tasks (about 6 minutes on 2 idle cores)
  bench_tasks.py --runs 3 --tasks 30

Needs the virtualenv, a Docker engine and the test-bed images (`make images`). Run it on
an otherwise idle machine: the CPU figures are the whole machine's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from testbed_common import PROJECT  # noqa: E402

BIN = Path(sys.executable).parent
IMAGE = f"{PROJECT}/host:debian13"
CONTAINER = f"{PROJECT}-bench-tasks"
PTH = "shipshape_ansiballz_cache.pth"


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent outside idle and iowait, in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def set_cache(on: bool) -> None:
    site = docker("exec", CONTAINER, "python3", "-c",
                  "import sys; print('/usr/local/lib/python3.%d/dist-packages' % sys.version_info[1])").strip()
    src, dst = (f"/root/{PTH}", f"{site}/{PTH}") if on else (f"{site}/{PTH}", f"/root/{PTH}")
    docker("exec", CONTAINER, "sh", "-c", f"test -e {dst} || mv {src} {dst}")


def one_run(playbook: Path, workdir: Path) -> tuple:
    env = dict(os.environ, ANSIBLE_PIPELINING="1", ANSIBLE_CONFIG=str(workdir / "ansible.cfg"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cpu0, t0 = busy_cpu_seconds(), time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", f"{CONTAINER},",
                           "-c", "community.docker.docker", str(playbook)],
                          env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.monotonic() - t0, busy_cpu_seconds() - cpu0
    if proc.returncode != 0:
        sys.exit(f"[bench] the playbook failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs with and without the cache (default 5)")
    parser.add_argument("--tasks", type=int, default=60, help="tasks in the playbook (default 60)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.tasks < 1:
        parser.error("--runs and --tasks must be at least 1")
    subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True, check=False)
    docker("run", "-d", "--name", CONTAINER, "--entrypoint", "sleep", IMAGE, "infinity")
    results = {True: [], False: []}
    try:
        with tempfile.TemporaryDirectory(prefix=f"{PROJECT}-bench-") as tmp:
            workdir = Path(tmp)
            (workdir / "ansible.cfg").write_text(
                "[defaults]\ninterpreter_python = /usr/bin/python3\ngather_facts = false\n")
            tasks = "".join(f"    - name: Task {i}\n      ansible.builtin.command: 'true'\n"
                            "      changed_when: false\n" for i in range(args.tasks))
            playbook = workdir / "tasks.yml"
            playbook.write_text(f"- name: Trivial tasks\n  hosts: all\n  gather_facts: false\n"
                                f"  tasks:\n{tasks}")
            set_cache(True)
            one_run(playbook, workdir)  # warm the cache and the controller's files
            for n in range(1, args.runs + 1):
                for on in (False, True):
                    set_cache(on)
                    wall, cpu = one_run(playbook, workdir)
                    results[on].append((wall, cpu))
                    print(f"[bench] run {n} cache {'on ' if on else 'off'}: {wall:.1f} s wall, "
                          f"{cpu:.1f} s CPU", flush=True)
    finally:
        subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True, check=False)
    print(f"\n{args.tasks} tasks, median of {args.runs} runs      wall      CPU   per task (wall)")
    medians = {}
    for on in (False, True):
        wall = statistics.median(w for w, _ in results[on])
        cpu = statistics.median(c for _, c in results[on])
        medians[on] = (wall, cpu)
        print(f"  cache {'on ' if on else 'off'}                   {wall:7.1f} s {cpu:6.1f} s   "
              f"{wall / args.tasks:.3f} s")
    print(f"  ratio on/off                 {medians[True][0] / medians[False][0]:7.2f}   "
          f"{medians[True][1] / medians[False][1]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
